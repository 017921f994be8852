"""One rendering path for both runtimes: OpenAI messages + behaviour -> template input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmux.backends.base import ChatEvent, ChatJob
from llmux.chat.behaviour import apply_to_messages, template_kwargs
from llmux.chat.messages import IMAGE_PART, ImagePolicy, template_input
from llmux.chat.parsers import OutputParser, parser_for
from llmux.chat.tool_choice import forced_prefix


@dataclass
class PromptInput:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    kwargs: dict[str, Any]
    """Extra template variables: ``enable_thinking``, ``reasoning_effort``."""
    images: list[bytes]


def prompt_input(
    job: ChatJob,
    *,
    family: str | None,
    vision: bool,
    template_source: str,
    image_part: dict[str, Any] = IMAGE_PART,
    policy: ImagePolicy = ImagePolicy(),
) -> PromptInput:
    converted = template_input(job.messages, family=family, vision=vision, image_part=image_part, policy=policy)
    messages = apply_to_messages(family, job.behaviour, template_source, converted.messages)
    kwargs = template_kwargs(family, job.behaviour, template_source)
    return PromptInput(messages=messages, tools=job.tools or None, kwargs=kwargs, images=converted.images)


@dataclass
class OutputSetup:
    prompt: str
    """The rendered prompt plus any pre-filled start of the answer: what the model sees."""
    parser: OutputParser
    preamble: list[ChatEvent]
    """Events the pre-fill already implies (a forced tool call's start)."""


def output_setup(family: str | None, job: ChatJob, prompt: str) -> OutputSetup:
    """The parser for this turn, with a forced tool call (``tool_choice``) pre-filled."""
    prefill = forced_prefix(family, job.tool_choice, prompt, bool(job.tools))
    parser = parser_for(family, prompt=prompt, tools=job.tools)
    preamble = parser.feed(prefill) if prefill else []
    return OutputSetup(prompt=prompt + prefill, parser=parser, preamble=preamble)
