"""Qwen3.5 output: ``<think>…</think>``, content, and tool calls written as

    <tool_call>
    <function=NAME>
    <parameter=KEY>
    VALUE
    </parameter>
    </function>
    </tool_call>

(the format of transformers' Qwen3.5 response schema). Parameter values are bare text, typed
by the tool's JSON schema. A ``<tool_call>`` holding Hermes-style JSON
(``{"name": ..., "arguments": {...}}``) is accepted too: it is how ChatML models (family
``chatml``, see ``chat.hermes``) call tools, so the same parser reads them, without the
``<think>`` markers. Either way a call's start is emitted as soon as its name is complete.
"""

from __future__ import annotations

import json
import re
from typing import Any

import json_repair

from llmux.chat.arguments import json_arguments, new_call_id, xml_arguments
from llmux.chat.events import ChatEvent, ToolCallArgs, ToolCallStart
from llmux.chat.parsers import Trimmer, content, reasoning
from llmux.chat.scanner import MarkerScanner

END = ("<|im_end|>", "<|endoftext|>")
_FUNCTION = re.compile(r"<function=([^>\n]+)>")
_JSON_NAME = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_PARAMETER = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|(?=</function>)|$)", re.DOTALL)


class QwenParser:
    def __init__(
        self, *, tools: list[dict[str, Any]] | None, thinking: bool, end: tuple[str, ...] = END, think: bool = True
    ) -> None:
        self.calls = 0
        self._end = end
        self._think = ("<think>",) if think else ()
        self._tools = tools
        self._state = "reasoning" if thinking else "content"
        self._scanner = MarkerScanner()
        self._content = Trimmer()
        self._reasoning = Trimmer()
        self._call = ""  # text inside the open <tool_call>
        self._call_name: str | None = None
        self._call_json = False

    @staticmethod
    def opens_thinking(prompt: str) -> bool:
        """The template ends the prompt with an open ``<think>`` when thinking is on."""
        tail = prompt.rstrip()
        return tail.endswith("<think>")

    def _markers(self) -> tuple[str, ...]:
        if self._state == "reasoning":
            return ("</think>", *self._end)
        if self._state == "tool":
            return ("</tool_call>", *self._end)
        return (*self._think, "<tool_call>", *self._end)

    def feed(self, text: str) -> list[ChatEvent]:
        out: list[ChatEvent] = []
        while self._state != "done":
            plain, marker = self._scanner.scan(text, self._markers())
            text = ""
            out += self._text(plain)
            if marker is None:
                break
            out += self._marker(marker)
        return out

    def _text(self, plain: str) -> list[ChatEvent]:
        if self._state == "reasoning":
            return reasoning(self._reasoning.push(plain))
        if self._state == "tool":
            self._call += plain
            return self._maybe_start()
        return content(self._content.push(plain))

    def _marker(self, marker: str) -> list[ChatEvent]:
        if marker in self._end:
            out = self._finish_call() if self._state == "tool" else []
            self._state = "done"
            return out
        if marker == "<think>":
            self._state = "reasoning"
        elif marker == "</think>":
            self._state = "content"
        elif marker == "<tool_call>":
            self._state = "tool"
            self._call, self._call_name, self._call_json = "", None, False
        elif marker == "</tool_call>":
            out = self._finish_call()
            self._state = "content"
            return out
        return []

    def _maybe_start(self) -> list[ChatEvent]:
        if self._call_name is not None:
            return []
        match = _FUNCTION.search(self._call)
        if match is not None:
            self._call_name = match.group(1).strip()
        elif (json_match := _JSON_NAME.match(self._call)) is not None:
            self._call_name, self._call_json = _json_string(json_match.group(1)), True
        else:
            return []
        return [ToolCallStart(index=self.calls, id=new_call_id(), name=self._call_name)]

    def _finish_call(self) -> list[ChatEvent]:
        out = self._maybe_start()
        if self._call_name is None:
            return self._finish_json_call()
        if self._call_json:
            out.append(ToolCallArgs(index=self.calls, text=json_arguments(_json_args(self._call))))
            self.calls += 1
            return out
        match = _FUNCTION.search(self._call)
        body = self._call[match.end() :] if match else ""
        params = [(key.strip(), _strip_newline(value)) for key, value in _PARAMETER.findall(body)]
        out.append(ToolCallArgs(index=self.calls, text=xml_arguments(params, self._tools, self._call_name)))
        self.calls += 1
        return out

    def _finish_json_call(self) -> list[ChatEvent]:
        """Hermes-style ``{"name": ..., "arguments": ...}`` inside ``<tool_call>``."""
        try:
            value = json.loads(self._call)
        except ValueError:
            value = json_repair.loads(self._call)
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return content(self._content.push(self._call))  # not a call after all: show it
        args = value.get("arguments", {})
        text = json_arguments(args if isinstance(args, str) else json.dumps(args))
        out: list[ChatEvent] = [
            ToolCallStart(index=self.calls, id=new_call_id(), name=value["name"]),
            ToolCallArgs(index=self.calls, text=text),
        ]
        self.calls += 1
        return out

    def close(self) -> list[ChatEvent]:
        if self._state == "done":
            return []
        rest = self._scanner.drain()
        out = self._text(rest)
        if self._state == "tool":
            out += self._finish_call()  # truncated by max_tokens: finish what was written
        self._state = "done"
        return out


def _json_string(body: str) -> str:
    """A JSON string's body, unescaped (an invalid escape is kept as written)."""
    try:
        return str(json.loads(f'"{body}"'))
    except ValueError:
        return body


def _json_args(call: str) -> str:
    """The ``arguments`` of a Hermes-style call whose name was already read, as JSON text."""
    try:
        value = json.loads(call)
    except ValueError:
        value = json_repair.loads(call)
    args = value.get("arguments", {}) if isinstance(value, dict) else {}
    return args if isinstance(args, str) else json.dumps(args)


def _strip_newline(value: str) -> str:
    """The template writes ``<parameter=K>\\nV\\n</parameter>``: drop exactly that framing."""
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value
