"""The Responses API (``POST /v1/responses``), stateless, over the chat service.

A request is translated into the chat completions request it means (``chat.responses_in``:
a 400 for anything llmux cannot honour), validated by ``ChatService.prepare`` — so both APIs
accept and refuse the same things, before any lease — and run as one chat turn; the turn's
events become output items (``chat.responses_out``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from llmux.chat.responses_in import chat_request
from llmux.chat.responses_out import ResponseBuilder, frame, response_skeleton
from llmux.protocol.errors import InvalidRequest, LlmuxError
from llmux.protocol.responses import Response, ResponsesRequest, TextConfig
from llmux.protocol.sse import KEEPALIVE
from llmux.services.chat import ChatService, PreparedChat


@dataclass(frozen=True, slots=True)
class PreparedResponse:
    chat: PreparedChat
    request: ResponsesRequest

    @property
    def stream(self) -> bool:
        return self.request.stream

    def builder(self) -> ResponseBuilder:
        r = self.request
        skeleton = response_skeleton(
            r.model,
            instructions=r.instructions,
            tools=[t for t in r.tools or () if t.get("type") == "function"],
            tool_choice=r.tool_choice or "auto",
            parallel_tool_calls=r.parallel_tool_calls is not False,
            max_output_tokens=r.max_output_tokens,
            temperature=r.temperature,
            top_p=r.top_p,
            reasoning=r.reasoning,
            metadata=r.metadata or {},
            text=r.text if r.text and r.text.format else TextConfig(format={"type": "text"}),
        )
        return ResponseBuilder(
            skeleton,
            parallel_tool_calls=r.parallel_tool_calls is not False,
            encrypt_reasoning="reasoning.encrypted_content" in (r.include or ()),
        )


class ResponsesService:
    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    async def prepare(self, request: ResponsesRequest) -> PreparedResponse:
        try:
            return PreparedResponse(await self.chat.prepare(chat_request(request)), request)
        except InvalidRequest as exc:
            exc.param = _responses_param(exc.param)  # the chat check's name for it -> this API's
            raise

    async def create(self, prepared: PreparedResponse) -> Response:
        builder = prepared.builder()
        async with aclosing(self.chat.turn(prepared.chat)) as turn:
            async for batch in turn:
                for event in batch or ():
                    builder.feed(event)
        return builder.response

    async def stream(self, prepared: PreparedResponse) -> AsyncGenerator[bytes, None]:
        """SSE: keep-alive comments while the model loads; ``response.failed`` on an error
        after the headers went out."""
        builder = prepared.builder()
        yield b"".join(frame(e) for e in builder.start())
        try:
            async with aclosing(self.chat.turn(prepared.chat)) as turn:
                async for batch in turn:
                    if batch is None:
                        yield KEEPALIVE
                        continue
                    out = b"".join(frame(e) for event in batch for e in builder.feed(event))
                    if out:
                        yield out
        except LlmuxError as exc:
            yield b"".join(frame(e) for e in builder.fail(exc.code or exc.type, exc.message))


_PARAMS = {
    "messages": "input",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
    "logprobs": "include",
    "reasoning_effort": "reasoning.effort",
}


def _responses_param(param: str | None) -> str | None:
    if param is None:
        return None
    head, dot, rest = param.partition(".")
    head = head.split("[", 1)[0]
    if head not in _PARAMS:
        return param
    if head == "messages":
        return "input"  # messages are merged and split from input items: no 1:1 index
    return _PARAMS[head] + (dot + rest if head == "response_format" and rest else "")
