"""Hermes-style tool calling for ChatML models whose own template knows no tools.

Many ChatML chat templates (SmolLM2's among them) render only ``role`` and ``content``: the
tools a request offers, an earlier turn's calls and the tool results would vanish. For those
templates the conversation is rewritten, before rendering, the way Hermes/Qwen2.5-style
templates write it, which is the format such models were tuned on if they call tools at all:

1. the tools go into the system message as ``<tools>`` JSON lines, with the instruction to
   answer ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
2. an assistant turn's calls become ``<tool_call>`` blocks after its text;
3. tool results become a user turn of ``<tool_response>`` blocks (consecutive ones merged).

A template that reads the ``tools`` variable renders them itself and gets the conversation unchanged.
The answer is parsed by ``chat.qwen.QwenParser``, which reads Hermes JSON calls.
"""

from __future__ import annotations

import json
from typing import Any

from llmux.chat.template import template_variables

TOOLS_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def template_knows_tools(source: str) -> bool:
    return "tools" in template_variables(source)


def with_tools(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``messages`` (template input) rewritten for a template without tool support."""
    out: list[dict[str, Any]] = []
    merging = False  # the last message out is a user turn of tool results
    for message in messages:
        role = message.get("role")
        if role == "tool":  # 3
            block = f"<tool_response>\n{message.get('content') or ''}\n</tool_response>"
            if merging:
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block})
            merging = True
            continue
        merging = False
        if role == "assistant" and message.get("tool_calls"):  # 2
            calls = [_call_text(call) for call in message["tool_calls"]]
            text = "\n".join(filter(None, [message.get("content") or "", *calls]))
            message = {k: v for k, v in message.items() if k != "tool_calls"} | {"content": text}
        out.append(message)
    if tools:  # 1
        prompt = TOOLS_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        if out and out[0].get("role") in ("system", "developer"):
            out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{prompt}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def _call_text(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    body = {"name": function.get("name"), "arguments": function.get("arguments") or {}}
    return f"<tool_call>\n{json.dumps(body, ensure_ascii=False)}\n</tool_call>"
