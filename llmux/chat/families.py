"""Which output parser reads which model family (``PhysicalModel.family``)."""

from __future__ import annotations

from typing import Any

from llmux.chat.harmony import HarmonyParser
from llmux.chat.parsers import ChatMLParser, OutputParser
from llmux.chat.qwen import QwenParser


def parser_for(family: str | None, *, prompt: str, tools: list[dict[str, Any]] | None) -> OutputParser:
    """The parser for a model family. ``prompt`` is the rendered prompt: its tail tells whether
    the template already opened a ``<think>`` block (Qwen3.5 thinking mode)."""
    if family == "qwen3.5":
        return QwenParser(tools=tools, thinking=QwenParser.opens_thinking(prompt))
    if family == "gpt-oss":
        return HarmonyParser(tools=tools)
    if tools:  # ChatML with tools: Hermes-style ``<tool_call>{json}</tool_call>``
        return QwenParser(tools=tools, thinking=False, end=ChatMLParser.END, think=False)
    return ChatMLParser()
