"""POST /v1/embeddings: decode, call the embeddings service, encode."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency

from llmux.api.decoding import decode_json
from llmux.protocol.embeddings import EmbeddingRequest
from llmux.services.embeddings import EmbeddingsService


class EmbeddingsController(Controller):
    path = "/embeddings"

    @post("/", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], embeddings: NamedDependency[EmbeddingsService]
    ) -> Response[Any]:
        job = embeddings.prepare(decode_json(await request.body(), EmbeddingRequest))
        return Response(msgspec.json.encode(await embeddings.embed(job)), media_type="application/json")
