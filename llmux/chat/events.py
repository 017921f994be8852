"""What a chat turn produces, whatever the runtime: deltas in order, then one ``Finish``.

The family parsers (``chat.parsers``) make these from a model's raw text; the stream encoder
(``chat.stream``) turns them into OpenAI chunks; the job (``ChatJob``) is what a validated
request asks for.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from llmux.engines.base import SamplingParams, TokenLogprob
from llmux.protocol.chat import Message
from llmux.registry.config import Behaviour


class ChatJob(msgspec.Struct, frozen=True, kw_only=True):
    """A validated chat request for one physical model."""

    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    """OpenAI tool definitions as plain data: templates and parsers read them as mappings."""
    tool_choice: Any = None
    params: SamplingParams = SamplingParams()
    behaviour: Behaviour = Behaviour()
    images: tuple[bytes, ...] = ()
    """Every image of ``messages``, decoded and checked before the lease, in order."""


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0
    """Of ``completion_tokens``, those the model spent reasoning."""
    cached_tokens: int = 0
    """Of ``prompt_tokens``, those the runtime did not evaluate again (a reused prefix)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ContentDelta(msgspec.Struct, frozen=True, tag="content"):
    text: str


class ReasoningDelta(msgspec.Struct, frozen=True, tag="reasoning"):
    text: str


class ToolCallStart(msgspec.Struct, frozen=True, tag="tool_call"):
    """A new tool call; its arguments follow as ``ToolCallArgs`` with the same index."""

    index: int
    id: str
    name: str


class ToolCallArgs(msgspec.Struct, frozen=True, tag="tool_args"):
    index: int
    text: str


class Logprobs(msgspec.Struct, frozen=True, tag="logprobs"):
    """The log probabilities of the tokens whose text the events before it carried (only when
    the request asked for ``logprobs``; a turn that reasons first is refused it)."""

    tokens: tuple[TokenLogprob, ...]


FinishReason = Literal["stop", "length", "tool_calls"]


class Finish(msgspec.Struct, frozen=True, tag="finish"):
    reason: FinishReason
    usage: Usage


ChatEvent = ContentDelta | ReasoningDelta | ToolCallStart | ToolCallArgs | Logprobs | Finish
"""What a chat backend yields: deltas in order, then exactly one ``Finish``."""
