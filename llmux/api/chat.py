"""POST /v1/chat/completions: decode, call the chat service, encode."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from llmux.api.decoding import decode_json
from llmux.api.wire import ChatCompletionRequest
from llmux.chat.service import ChatService, prepare

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@post("/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    service: ChatService = request.app.state.chat
    chat = prepare(decode_json(await request.body(), ChatCompletionRequest), service.registry)
    if chat.stream:
        return Stream(service.stream(chat), media_type="text/event-stream", headers=SSE_HEADERS)
    completion = await service.complete(chat)
    return Response(msgspec.json.encode(completion), media_type="application/json")


HANDLERS = [chat_completions]
