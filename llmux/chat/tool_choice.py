"""``tool_choice`` beyond ``auto``: force a call by writing its opening into the prompt.

``"none"`` never reaches a backend with tools (the service drops them). ``"required"`` and
``{"type": "function", "function": {"name": ...}}`` are honoured by pre-filling the start of the
assistant's tool call in the model's own format, so the model can only continue the call:

1. Qwen3.5: ``<tool_call>\\n<function=`` (+ ``NAME>\\n`` when named), after closing an open
   ``<think>`` block.
2. gpt-oss: ``<|channel|>commentary to=functions.`` (+ ``NAME <|constrain|>json<|message|>``).
3. ChatML (Hermes-style JSON): ``<tool_call>\n{"name": "`` (+ ``NAME", "arguments": `` when named).

The parser is fed the same pre-fill first, so it starts inside the call.
"""

from __future__ import annotations

import json
from typing import Any


def forced_name(tool_choice: Any) -> str | None:
    """The function a request forces, ``""`` for any function, None when nothing is forced."""
    if tool_choice == "required":
        return ""
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function") or {}
        name = function.get("name") if isinstance(function, dict) else None
        return name if isinstance(name, str) and name else None
    return None


def forced_prefix(family: str | None, tool_choice: Any, prompt: str, has_tools: bool) -> str:
    name = forced_name(tool_choice)
    if name is None or not has_tools:
        return ""
    if family == "qwen3.5":  # 1
        close = "\n</think>\n\n" if prompt.rstrip().endswith("<think>") else ""
        return close + "<tool_call>\n<function=" + (f"{name}>\n" if name else "")
    if family == "gpt-oss":  # 2
        return "<|channel|>commentary to=functions." + (f"{name} <|constrain|>json<|message|>" if name else "")
    if family == "chatml":  # 3
        return '<tool_call>\n{"name": ' + (f'{json.dumps(name)}, "arguments": ' if name else '"')
    return ""
