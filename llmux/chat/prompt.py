"""One rendering path for every text engine: a chat job + the engine's template -> the
prompt text, and the parser that will read the answer.

1. Messages become template input (``chat.messages``); images become the engine's
   ``image_part`` (a model that takes none refuses them).
2. The virtual model's behaviour adds its template variables or system line (``chat.behaviour``);
   a ChatML template that knows no tools gets them written Hermes-style (``chat.hermes``).
3. The template renders, sandboxed (``chat.template``); a template that refuses the
   conversation is the client's 400, not a server error.
4. A forced ``tool_choice`` pre-fills the start of the call (``chat.tool_choice``); the parser
   is fed the same pre-fill, so it starts inside the call.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmux.chat import hermes
from llmux.chat.behaviour import apply_to_messages, template_kwargs
from llmux.chat.events import ChatEvent, ChatJob
from llmux.chat.families import parser_for
from llmux.chat.messages import template_input
from llmux.chat.parsers import OutputParser
from llmux.chat.template import render
from llmux.chat.tool_choice import forced_prefix
from llmux.engines.base import ChatTemplate
from llmux.protocol.errors import InvalidRequest


@dataclass
class RenderedPrompt:
    prompt: str
    """The rendered prompt plus any pre-filled start of the answer: what the model sees."""
    parser: OutputParser
    preamble: list[ChatEvent]
    """Events the pre-fill already implies (a forced tool call's start)."""


def render_prompt(job: ChatJob, family: str | None, template: ChatTemplate) -> RenderedPrompt:
    if job.images and template.image_part is None:  # 1
        raise InvalidRequest(
            "This model has no vision encoder loaded: it cannot take images.",
            param="messages",
            code="vision_not_supported",
        )
    messages = template_input(job.messages, family=family, image_part=template.image_part)
    messages = apply_to_messages(family, job.behaviour, template.source, messages)  # 2
    if family == "chatml" and not hermes.template_knows_tools(template.source):
        messages = hermes.with_tools(messages, job.tools)  # 2: its template cannot write tools
    kwargs = template_kwargs(family, job.behaviour, template.source)
    try:  # 3
        prompt = render(template.source, messages, tools=job.tools or None, **{**template.variables, **kwargs})
    except InvalidRequest:
        raise
    except Exception as exc:  # jinja2.TemplateError and friends: the conversation is at fault
        raise InvalidRequest(
            f"the model's chat template cannot render these messages: {exc}", param="messages"
        ) from None
    prefill = forced_prefix(family, job.tool_choice, prompt, bool(job.tools))  # 4
    parser = parser_for(family, prompt=prompt, tools=job.tools)
    preamble = parser.feed(prefill) if prefill else []
    return RenderedPrompt(prompt=prompt + prefill, parser=parser, preamble=preamble)
