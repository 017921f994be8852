"""POST /v1/responses: decode, call the responses service, encode."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency

from llmux.api.chat import SSE_HEADERS
from llmux.api.decoding import decode_json
from llmux.api.disconnect import closing_stream
from llmux.api.openapi import Doc, json_of, sse
from llmux.api.upstream import relay_json
from llmux.protocol.responses import Response as ResponseBody
from llmux.protocol.responses import ResponsesRequest
from llmux.protocol.responses_events import StreamEvent
from llmux.registry import ModelType
from llmux.services.responses import ResponsesService
from llmux.services.upstream import UpstreamService

DOC = Doc(
    body=(json_of(ResponsesRequest),),
    ok=(json_of(ResponseBody), sse(StreamEvent, done=False)),
    ok_description="A response, or its events",
)


class ResponsesController(Controller):
    path = "/responses"

    @post("/", status_code=200, opt={"openapi": DOC})
    async def create(
        self,
        request: Request[Any, Any, Any],
        responses: NamedDependency[ResponsesService],
        upstream: NamedDependency[UpstreamService],
    ) -> Response[Any]:
        body = await request.body()
        if (relayed := await relay_json(body, upstream, "responses", ModelType.LLM)) is not None:
            return relayed
        prepared = await responses.prepare(decode_json(body, ResponsesRequest))
        if prepared.stream:
            return closing_stream(responses.stream(prepared), media_type="text/event-stream", headers=SSE_HEADERS)
        return Response(msgspec.json.encode(await responses.create(prepared)), media_type="application/json")
