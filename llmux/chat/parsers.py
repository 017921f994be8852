"""Turn a model's raw output text, as it streams, into chat events.

One parser per chat family (``PhysicalModel.family``), shared by both runtimes: the runtime
yields decoded text pieces (special tokens included), the parser yields ``ContentDelta``,
``ReasoningDelta``, ``ToolCallStart`` and ``ToolCallArgs`` in order. A tool call's start is
emitted as soon as its name is known; its arguments once the call is complete, because they
are typed (Qwen3.5) or repaired (malformed JSON) as a whole.
"""

from __future__ import annotations

from typing import Protocol

from llmux.chat.events import ChatEvent, ContentDelta, ReasoningDelta
from llmux.chat.scanner import MarkerScanner


class OutputParser(Protocol):
    calls: int
    """How many tool calls were emitted (``finish_reason`` is ``tool_calls`` when > 0)."""

    def feed(self, text: str) -> list[ChatEvent]: ...

    def close(self) -> list[ChatEvent]:
        """End of output: flush what is held back, finish a truncated tool call."""
        ...


class Trimmer:
    """Drops leading whitespace of a text run and holds trailing whitespace until more text
    follows, so the newlines templates put around tags never reach the client."""

    def __init__(self) -> None:
        self.started = False
        self._held = ""

    def push(self, text: str) -> str:
        if not self.started:
            text = text.lstrip()
            if not text:
                return ""
            self.started = True
        text = self._held + text
        body = text.rstrip()
        self._held = text[len(body) :]
        return body

    def restart(self) -> None:
        self.started = False
        self._held = ""


def content(text: str) -> list[ChatEvent]:
    return [ContentDelta(text)] if text else []


def reasoning(text: str) -> list[ChatEvent]:
    return [ReasoningDelta(text)] if text else []


class ChatMLParser:
    """Plain ChatML (SmolLM2 and the like): everything is content up to the end-of-turn marker."""

    END = ("<|im_end|>", "<|endoftext|>", "</s>")

    def __init__(self) -> None:
        self.calls = 0
        self._scanner = MarkerScanner()
        self._trim = Trimmer()
        self._done = False

    def feed(self, text: str) -> list[ChatEvent]:
        if self._done:
            return []
        plain, marker = self._scanner.scan(text, self.END)
        self._done = marker is not None
        return content(self._trim.push(plain))

    def close(self) -> list[ChatEvent]:
        if self._done:
            return []
        return content(self._trim.push(self._scanner.drain()))
