"""gpt-oss output in OpenAI's harmony format.

The prompt ends with ``<|start|>assistant``; the model then writes one or more messages::

    <|channel|>analysis<|message|>…reasoning…<|end|>
    <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>
    <|start|>assistant<|channel|>final<|message|>…answer…<|return|>

The header (everything before ``<|message|>``) names the channel and, for a tool call, the
recipient (``to=functions.NAME``, written before or after the channel). ``analysis`` is
reasoning, ``final`` and plain ``commentary`` are content, a message to a recipient is a tool
call whose body is its JSON arguments.
"""

from __future__ import annotations

import re
from typing import Any

from llmux.chat.arguments import json_arguments, new_call_id
from llmux.chat.events import ChatEvent, ToolCallArgs, ToolCallStart
from llmux.chat.parsers import content, reasoning
from llmux.chat.scanner import MarkerScanner

_HEADER_END = ("<|message|>", "<|start|>", "<|end|>", "<|call|>", "<|return|>")
_BODY_END = ("<|end|>", "<|call|>", "<|return|>", "<|start|>")
_CHANNEL = re.compile(r"<\|channel\|>\s*([A-Za-z_]+)")
_RECIPIENT = re.compile(r"\bto=([^\s<]+)")


class HarmonyParser:
    def __init__(self, *, tools: list[dict[str, Any]] | None) -> None:
        self.calls = 0
        self._tools = tools
        self._scanner = MarkerScanner()
        self._state = "header"
        self._header = ""
        self._route = "content"  # where the current body goes: content | reasoning | tool
        self._args = ""
        self._emitted = False

    def feed(self, text: str) -> list[ChatEvent]:
        out: list[ChatEvent] = []
        while self._state != "done":
            markers = _HEADER_END if self._state == "header" else _BODY_END
            plain, marker = self._scanner.scan(text, markers)
            text = ""
            if self._state == "header":
                self._header += plain
            else:
                out += self._body(plain)
            if marker is None:
                break
            out += self._marker(marker)
        self._emitted = self._emitted or bool(out)
        return out

    def _body(self, plain: str) -> list[ChatEvent]:
        if self._route == "tool":
            self._args += plain
            return []
        return reasoning(plain) if self._route == "reasoning" else content(plain)

    def _marker(self, marker: str) -> list[ChatEvent]:
        if self._state == "header":
            if marker == "<|message|>":
                return self._open_body()
            if marker == "<|return|>":
                self._state = "done"
            self._header = ""  # <|start|> or a stray end: a new header follows
            return []
        out = self._close_body()
        self._state = "done" if marker == "<|return|>" else "header"
        return out

    def _open_body(self) -> list[ChatEvent]:
        header, self._header = self._header, ""
        self._state = "body"
        channel = _CHANNEL.search(header)
        recipient = _RECIPIENT.search(header)
        if recipient is not None:
            name = recipient.group(1).removeprefix("functions.")
            self._route, self._args = "tool", ""
            return [ToolCallStart(index=self.calls, id=new_call_id(), name=name)]
        self._route = "reasoning" if channel is not None and channel.group(1) == "analysis" else "content"
        return []

    def _close_body(self) -> list[ChatEvent]:
        if self._route != "tool":
            return []
        self._route = "content"
        out: list[ChatEvent] = [ToolCallArgs(index=self.calls, text=json_arguments(self._args))]
        self.calls += 1
        return out

    def close(self) -> list[ChatEvent]:
        if self._state == "done":
            return []
        rest = self._scanner.drain()
        if self._state == "body":
            out = self._body(rest) + self._close_body()
        else:
            # Text that never became a harmony message (a model off-format): show it as content
            # rather than swallow it, unless real messages were already emitted.
            stray = (self._header + rest).strip()
            out = content(stray) if stray and not self._emitted else []
        self._state = "done"
        return out
