"""Embeddings: validate the whole request before a lease, lease the model, embed in a worker
thread, shape the vectors there too (Matryoshka truncation, base64), account.

Everything a request can get wrong without the model is refused before the lease, so a bad
request never loads or swaps a model: the model's type, the input's shape, count and length,
and ``dimensions`` on a model not trained for it. Only the token count of an input needs the
loaded tokenizer; the engine checks it before computing anything.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from llmux.engines.worker import run_in_thread
from llmux.protocol.embeddings import EmbeddingList, EmbeddingOut, EmbeddingRequest, EmbeddingUsage, EncodingFormat
from llmux.protocol.errors import InvalidRequest
from llmux.registry import ModelType, Registry
from llmux.residency.controller import ResidencyController
from llmux.services.access import admit
from llmux.services.record import note


@dataclass(frozen=True, slots=True)
class EmbeddingJob:
    model: str
    physical: str
    texts: list[str]
    dimensions: int | None
    encoding: EncodingFormat


class EmbeddingsService:
    def __init__(self, registry: Registry, controller: ResidencyController) -> None:
        self.registry = registry
        self.controller = controller

    def prepare(self, request: EmbeddingRequest) -> EmbeddingJob:
        _, physical = self.registry.resolve(request.model, expect=ModelType.EMBEDDING)
        note(model=request.model, physical=physical.id, encoding=request.encoding_format)
        texts = self._texts(request.input)
        note(inputs=len(texts))
        if request.dimensions is not None:
            if not physical.matryoshka:
                raise InvalidRequest(
                    f"The model {request.model!r} has fixed-size vectors; `dimensions` needs a model "
                    "trained for truncation (matryoshka: true in models.yaml).",
                    param="dimensions",
                    code="dimensions_not_supported",
                )
            note(dimensions=request.dimensions)
        # The key's models and limits (404/429), reserving about four characters a token.
        admit(request.model, tokens=sum(len(text) for text in texts) // 4 + 1)
        self.controller.admit(physical.id)
        return EmbeddingJob(request.model, physical.id, texts, request.dimensions, request.encoding_format)

    def _texts(self, raw: str | list[Any]) -> list[str]:
        limits = self.registry.limits
        texts = [raw] if isinstance(raw, str) else raw
        if not texts:
            raise InvalidRequest("`input` is an empty list; send at least one string.", param="input")
        if len(texts) > limits.max_embedding_inputs:
            raise InvalidRequest(
                f"`input` has {len(texts)} items; at most {limits.max_embedding_inputs} per request.",
                param="input",
                code="limit_exceeded",
            )
        for i, text in enumerate(texts):
            where = "input" if isinstance(raw, str) else f"input[{i}]"
            if not isinstance(text, str):
                raise InvalidRequest(
                    f"{where} is not a string; send text (token arrays are not supported).", param="input"
                )
            if not text:
                raise InvalidRequest(f"{where} is an empty string.", param="input")
            if len(text) > limits.max_embedding_input_chars:
                raise InvalidRequest(
                    f"{where} is {len(text)} characters; at most {limits.max_embedding_input_chars}.",
                    param="input",
                    code="limit_exceeded",
                )
        return texts

    async def embed(self, job: EmbeddingJob) -> EmbeddingList:
        from llmux.engines.embedding import finish  # numpy: installed with every embedding runtime

        started = time.perf_counter()
        async with self.controller.lease(job.physical) as lease:
            leased = time.perf_counter()
            engine: Any = lease.engine
            if job.dimensions is not None and job.dimensions > engine.dimensions:
                raise InvalidRequest(
                    f"`dimensions` is {job.dimensions}; this model's vectors have {engine.dimensions}.",
                    param="dimensions",
                )

            def work(cancel: Any) -> tuple[list[Any], int]:
                vectors, tokens = engine.embed(job.texts, cancel)
                return finish(vectors, job.dimensions, job.encoding), tokens

            try:
                vectors, tokens = await run_in_thread(work, name=f"embed-{job.physical}")
            except asyncio.CancelledError:
                note(cancelled=True)  # the client went away; the thread stopped between batches
                raise
        note(
            prompt_tokens=tokens,
            waited_s=round(leased - started, 3),
            inference_s=round(time.perf_counter() - leased, 3),
        )
        return EmbeddingList(
            data=[EmbeddingOut(embedding=v, index=i) for i, v in enumerate(vectors)],
            model=job.model,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )
