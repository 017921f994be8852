"""Virtual-model behaviours, applied when the prompt is rendered (zero VRAM cost).

1. Qwen3.5: ``thinking`` is passed to the template as ``enable_thinking``; Instruct variants
   render the empty ``<think>\\n\\n</think>`` block, Thinking variants an open ``<think>``.
2. gpt-oss: the reasoning level is passed as ``reasoning_effort``; the gpt-oss template writes
   it as ``Reasoning: <level>`` into the harmony system message. A template that does not know
   the variable (a fine-tune's own) gets ``Reasoning: <level>`` prepended to the system prompt
   instead, so the behaviour never silently disappears.
3. Any family: a fixed ``system_prompt`` (an OCR model's instruction) opens the system message;
   a client's own system message is kept after it, in the same message (templates take one
   system message, first).
4. A request's reasoning effort (chat's ``reasoning_effort``, Responses' ``reasoning.effort``)
   overrides the virtual model's, for that request (``with_effort``): gpt-oss takes it as its
   level (OpenAI's six folded onto its three); Qwen3.5 thinks unless it is ``none`` (as Ollama's
   OpenAI endpoint does) — exactly the request the matching virtual model would make, template
   and parser alike; a family without reasoning accepts only ``none`` and refuses any level.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from llmux.protocol.chat import ReasoningEffort
from llmux.protocol.errors import InvalidRequest
from llmux.registry.config import Behaviour

GptOssLevel = Literal["low", "medium", "high"]
GPT_OSS_LEVELS: dict[ReasoningEffort, GptOssLevel] = {
    "none": "low",  # gpt-oss always reasons: its lowest level
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}


def with_effort(family: str | None, behaviour: Behaviour, effort: ReasoningEffort | None, model: str) -> Behaviour:
    """4: the behaviour for a request with this ``effort``, or a 400 naming ``reasoning_effort``."""
    if effort is None:
        return behaviour
    if family == "gpt-oss":
        return msgspec.structs.replace(behaviour, reasoning_effort=GPT_OSS_LEVELS[effort])
    if family == "qwen3.5":
        return msgspec.structs.replace(behaviour, thinking=effort != "none")
    if effort == "none":
        return behaviour  # it never reasons
    raise InvalidRequest(
        f"The model {model!r} has no reasoning levels: leave `reasoning_effort` out (or send `none`).",
        param="reasoning_effort",
        code="unsupported_parameter",
    )


def template_kwargs(family: str | None, behaviour: Behaviour, template_source: str) -> dict[str, Any]:
    if family == "qwen3.5" and behaviour.thinking is not None:  # 1
        return {"enable_thinking": behaviour.thinking}
    if family == "gpt-oss" and behaviour.reasoning_effort and "reasoning_effort" in template_source:  # 2
        return {"reasoning_effort": behaviour.reasoning_effort}
    return {}


def apply_to_messages(
    family: str | None, behaviour: Behaviour, template_source: str, messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if behaviour.system_prompt:  # 3
        messages = _prepend_system(behaviour.system_prompt, messages)
    level = behaviour.reasoning_effort
    if family != "gpt-oss" or not level or "reasoning_effort" in template_source:
        return messages
    return _prepend_system(f"Reasoning: {level}", messages)  # 2, fallback


def _prepend_system(line: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if messages and messages[0].get("role") in ("system", "developer"):
        first = dict(messages[0])
        content = first.get("content")
        if isinstance(content, list):  # content parts: the line goes first, as a text part
            first["content"] = [{"type": "text", "text": line}, *content]
        else:
            first["content"] = f"{line}\n\n{content or ''}".rstrip()
        return [first, *messages[1:]]
    return [{"role": "system", "content": line}, *messages]
