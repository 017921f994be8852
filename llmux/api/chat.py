"""POST /v1/chat/completions: decode, call the chat service, encode."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency

from llmux.api.decoding import decode_json
from llmux.api.disconnect import closing_stream
from llmux.api.openapi import Doc, json_of, sse
from llmux.api.upstream import SSE_HEADERS, relay_json
from llmux.protocol.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from llmux.protocol.errors import ErrorBody
from llmux.registry import ModelType
from llmux.services.chat import ChatService
from llmux.services.upstream import UpstreamService

__all__ = ["SSE_HEADERS", "ChatController"]
DOC = Doc(
    body=(json_of(ChatCompletionRequest),),
    ok=(json_of(ChatCompletion), sse(ChatCompletionChunk, ErrorBody, done=True)),
    ok_description="A completion, or its chunks",
)


class ChatController(Controller):
    path = "/chat"

    @post("/completions", status_code=200, opt={"openapi": DOC})
    async def completions(
        self,
        request: Request[Any, Any, Any],
        chat: NamedDependency[ChatService],
        upstream: NamedDependency[UpstreamService],
    ) -> Response[Any]:
        body = await request.body()
        if (relayed := await relay_json(body, upstream, "chat", ModelType.LLM)) is not None:
            return relayed
        prepared = await chat.prepare(decode_json(body, ChatCompletionRequest))
        if prepared.stream:
            return closing_stream(chat.stream(prepared), media_type="text/event-stream", headers=SSE_HEADERS)
        completion = await chat.complete(prepared)
        return Response(msgspec.json.encode(completion), media_type="application/json")
