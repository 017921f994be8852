"""OpenAI request messages -> the message dicts chat templates expect.

Templates are written against transformers' conventions, not OpenAI's wire format:
tool-call arguments are mappings (Qwen3.5 iterates ``arguments|items``; gpt-oss applies
``tojson`` and would double-encode a string), content is a string (images are parts the
engine's ``image_part`` describes, the pixels travel separately), and gpt-oss reads an earlier
turn's reasoning from ``thinking`` where OpenAI clients send ``reasoning_content``.
"""

from __future__ import annotations

import json
from typing import Any

import json_repair

from llmux.protocol.chat import ContentPart, ImagePart, Message, TextPart


def _arguments(raw: str) -> Any:
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        value = json_repair.loads(raw)
    return value if isinstance(value, dict) else {}


def _content(content: str | list[ContentPart] | None, image_part: dict[str, Any] | None) -> Any:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if image_part is None or not any(isinstance(p, ImagePart) for p in content):
        return "".join(p.text for p in content if isinstance(p, TextPart))
    return [{"type": "text", "text": p.text} if isinstance(p, TextPart) else dict(image_part) for p in content]


def image_parts(messages: list[Message]) -> list[tuple[str, ImagePart]]:
    """Every image of a conversation with its ``param`` path, in order."""
    return [
        (f"messages[{i}].content[{j}].image_url", part)
        for i, message in enumerate(messages)
        if isinstance(message.content, list)
        for j, part in enumerate(message.content)
        if isinstance(part, ImagePart)
    ]


def template_input(
    messages: list[Message], *, family: str | None, image_part: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """``image_part`` replaces each image (None: the model takes none; only the text is kept)."""
    out: list[dict[str, Any]] = []
    for raw in messages:
        message: dict[str, Any] = {"role": raw.role, "content": _content(raw.content, image_part)}
        if raw.name is not None:
            message["name"] = raw.name
        if raw.tool_call_id is not None:
            message["tool_call_id"] = raw.tool_call_id
        if raw.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": c.type,
                    "function": {"name": c.function.name, "arguments": _arguments(c.function.arguments)},
                }
                for c in raw.tool_calls
            ]
        reasoning = raw.reasoning_content
        if reasoning and family == "gpt-oss":
            # gpt-oss's template renders a tool-calling turn's text as its analysis and refuses
            # both at once: the reasoning goes only when there is no other text.
            if not (message.get("tool_calls") and message["content"]):
                message["thinking"] = reasoning
        elif reasoning:
            message["reasoning_content"] = reasoning
        out.append(message)
    return out
