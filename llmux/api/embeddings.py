"""POST /v1/embeddings: decode, call the embeddings service, encode."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency

from llmux.api.decoding import decode_json
from llmux.api.openapi import Doc, json_of
from llmux.api.upstream import relay_json
from llmux.protocol.embeddings import EmbeddingList, EmbeddingRequest
from llmux.registry import ModelType
from llmux.services.embeddings import EmbeddingsService
from llmux.services.upstream import UpstreamService

DOC = Doc(body=(json_of(EmbeddingRequest),), ok=(json_of(EmbeddingList),), ok_description="One vector per input")


class EmbeddingsController(Controller):
    path = "/embeddings"

    @post("/", status_code=200, opt={"openapi": DOC})
    async def create(
        self,
        request: Request[Any, Any, Any],
        embeddings: NamedDependency[EmbeddingsService],
        upstream: NamedDependency[UpstreamService],
    ) -> Response[Any]:
        body = await request.body()
        if (relayed := await relay_json(body, upstream, "embeddings", ModelType.EMBEDDING)) is not None:
            return relayed
        job = embeddings.prepare(decode_json(body, EmbeddingRequest))
        return Response(msgspec.json.encode(await embeddings.embed(job)), media_type="application/json")
