"""One rendering path for both runtimes: OpenAI messages + behaviour -> template input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmux.backends.base import ChatJob
from llmux.chat.behaviour import apply_to_messages, template_kwargs
from llmux.chat.messages import IMAGE_PART, template_input


@dataclass
class PromptInput:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    kwargs: dict[str, Any]
    """Extra template variables: ``enable_thinking``, ``reasoning_effort``."""
    images: list[bytes]


def prompt_input(
    job: ChatJob, *, family: str | None, vision: bool, template_source: str, image_part: dict[str, Any] = IMAGE_PART
) -> PromptInput:
    converted = template_input(job.messages, family=family, vision=vision, image_part=image_part)
    messages = apply_to_messages(family, job.behaviour, template_source, converted.messages)
    kwargs = template_kwargs(family, job.behaviour, template_source)
    return PromptInput(messages=messages, tools=job.tools or None, kwargs=kwargs, images=converted.images)
