"""Bounds on what one chat request may ask for, checked before a lease (issue 10).

Rendering and tokenising grow with the message count (quadratically in the tokenizers seen),
every ``stop`` entry is matched against every generated piece, and tool schemas are rendered
into the prompt: without bounds, one request holds the model's turn for minutes. Each refusal is
a 400 naming the ``param`` and the limit (``limits:`` in models.yaml).
"""

from __future__ import annotations

from typing import Any

import msgspec

from llmux.protocol.chat import ChatCompletionRequest
from llmux.protocol.errors import InvalidRequest
from llmux.registry.config import Limits


def depth(value: Any) -> int:
    """Nesting depth of decoded JSON (iterative: a deep value cannot overflow the stack here)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_chat(request: ChatCompletionRequest, limits: Limits) -> None:
    if len(request.messages) > limits.max_messages:
        raise _over("messages", f"{len(request.messages)} messages; at most {limits.max_messages}")
    if isinstance(request.stop, list) and len(request.stop) > limits.max_stop:
        raise _over("stop", f"{len(request.stop)} stop sequences; at most {limits.max_stop}")
    tools = request.tools or []
    if len(tools) > limits.max_tools:
        raise _over("tools", f"{len(tools)} tools; at most {limits.max_tools}")
    size = 0
    for i, tool in enumerate(tools):
        parameters = tool.function.parameters
        if parameters is not None and depth(parameters) > limits.max_tool_schema_depth:
            raise _over(
                f"tools[{i}].function.parameters",
                f"a schema nested more than {limits.max_tool_schema_depth} levels deep",
            )
        size += len(msgspec.json.encode(tool))
    if size > limits.max_tool_schema_kb * 1024:
        raise _over("tools", f"{size // 1024} KB of tool schemas; at most {limits.max_tool_schema_kb:g} KB")


def _over(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"The request has {what} (limits in models.yaml).", param=param, code="limit_exceeded")
