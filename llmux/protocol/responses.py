"""OpenAI Responses API wire shapes (``POST /v1/responses``), as msgspec Structs.

Stateless: llmux keeps no responses, so a request carries the whole conversation as input
items (messages, earlier reasoning, function calls and their outputs) the way Codex sends it
with ``store: false``. Shapes follow the openai SDK's ``types/responses``.

Input items are decoded one by one (``InputItem``), after the request itself: an item may omit
``type`` (the SDK's ``EasyInputMessage``), and a bad item is a 400 naming ``input[i]``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from llmux.protocol.chat import MaxTokens, ReasoningEffort, Temperature, TopP

# ---- input items --------------------------------------------------------------------------


class InputText(msgspec.Struct, tag_field="type", tag="input_text"):
    text: str


class InputImage(msgspec.Struct, tag_field="type", tag="input_image"):
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class OutputText(msgspec.Struct, tag_field="type", tag="output_text"):
    """An earlier assistant message's text, sent back by the client (annotations ignored)."""

    text: str


class Refusal(msgspec.Struct, tag_field="type", tag="refusal"):
    refusal: str


InputPart = InputText | InputImage | OutputText | Refusal


class MessageItem(msgspec.Struct, tag_field="type", tag="message"):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputPart]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(msgspec.Struct, tag_field="type", tag="function_call"):
    call_id: str
    name: str
    arguments: str = ""
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(msgspec.Struct, tag_field="type", tag="function_call_output"):
    call_id: str
    output: str | list[InputPart]
    id: str | None = None
    status: str | None = None


class SummaryText(msgspec.Struct, tag_field="type", tag="summary_text"):
    text: str


class ReasoningText(msgspec.Struct, tag_field="type", tag="reasoning_text"):
    text: str


class ReasoningItem(msgspec.Struct, tag_field="type", tag="reasoning"):
    id: str | None = None
    summary: list[SummaryText] = []
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    """llmux's own: the reasoning text, base64 (see ``include``). Not encrypted — llmux keeps
    no secrets from the client that produced it — but opaque, so a stateless client can hand
    a turn's reasoning back."""
    status: str | None = None


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem


# ---- request ------------------------------------------------------------------------------


class ReasoningConfig(msgspec.Struct, omit_defaults=True):
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class TextConfig(msgspec.Struct, omit_defaults=True):
    format: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesRequest(msgspec.Struct, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    """Every tool type is accepted; only ``function`` tools reach the model (hosted tools —
    web search, file search, shells, custom grammars — are not llmux's to run)."""
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None
    prompt: dict[str, Any] | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    include: list[str] | None = None
    metadata: dict[str, str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    max_tool_calls: int | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    service_tier: str | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None


# ---- output -------------------------------------------------------------------------------

Status = Literal["in_progress", "completed", "incomplete", "failed"]


class OutputTextPart(msgspec.Struct, tag_field="type", tag="output_text"):
    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class OutputMessage(msgspec.Struct, tag_field="type", tag="message"):
    id: str
    status: Status
    content: list[OutputTextPart]
    role: Literal["assistant"] = "assistant"


class OutputReasoning(msgspec.Struct, tag_field="type", tag="reasoning", omit_defaults=True):
    id: str
    summary: list[SummaryText]
    content: list[ReasoningText]
    status: Status
    encrypted_content: str | None = None


class OutputFunctionCall(msgspec.Struct, tag_field="type", tag="function_call"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Status


OutputItem = OutputMessage | OutputReasoning | OutputFunctionCall


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)
    output_tokens_details: OutputTokensDetails = msgspec.field(default_factory=OutputTokensDetails)


class IncompleteDetails(msgspec.Struct):
    reason: Literal["max_output_tokens"]


class ResponseError(msgspec.Struct):
    code: str
    message: str


class Response(msgspec.Struct, kw_only=True):
    id: str
    created_at: int
    model: str
    status: Status
    output: list[OutputItem]
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig = msgspec.field(default_factory=lambda: TextConfig(format={"type": "text"}))
    metadata: dict[str, str] = {}
    usage: ResponseUsage | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    store: bool = False
    previous_response_id: None = None
    truncation: Literal["disabled"] = "disabled"
    object: Literal["response"] = "response"
