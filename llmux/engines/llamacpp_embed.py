"""A GGUF embedding model through llama-cpp-python's embedding mode.

The context is the model's trained length capped by ``options.n_ctx``, and one decode batch
holds a whole context (a non-causal encoder such as BERT needs every token of a sequence in
one micro-batch). Pooling comes from the GGUF (``pooling_type``) unless ``options.pooling``
overrides it; a model whose pooling is ``none`` (a plain decoder GGUF) must set one.
One llama.cpp context serves one call at a time: concurrent requests take turns on a lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import llama_cpp
import numpy as np
import structlog

from llmux.engines.embedding import check_lengths, normalised
from llmux.engines.host_memory import release_host_memory
from llmux.protocol.errors import ModelLoadFailed
from llmux.registry import PhysicalModel, Registry
from llmux.registry.options import LlamaCppOptions
from llmux.residency.memory import measure

log = structlog.get_logger("llmux.engines")

_POOLING = {
    "model": llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
    "mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
    "cls": llama_cpp.LLAMA_POOLING_TYPE_CLS,
    "last": llama_cpp.LLAMA_POOLING_TYPE_LAST,
}
_CHUNK = 16
"""Inputs per ``embed`` call: ``cancel`` is checked between chunks."""


class LlamaCppEmbedder:
    def __init__(self, spec: PhysicalModel, registry: Registry, options: LlamaCppOptions) -> None:
        self.spec = spec
        self.path = registry.weights_path(spec)
        self.options = options
        self.llm: Any = None
        self.dimensions = 0
        self.context = 0
        self._lock = threading.Lock()

    def load(self) -> float | None:
        if not self.path.is_file():
            raise ModelLoadFailed(f"weights not found: {self.path}")
        started = time.perf_counter()
        context = min(self.options.n_ctx, self._trained_context() or self.options.n_ctx)
        self.llm, footprint = measure(lambda: self._open(context))
        if self.llm.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_NONE:
            self.unload()
            raise ModelLoadFailed(
                f"{self.spec.id}: the GGUF sets no pooling (one vector per token); set options.pooling"
            )
        self.dimensions, self.context = int(self.llm.n_embd()), context
        log.info(
            "model.weights_loaded",
            model=self.spec.id,
            context=context,
            dimensions=self.dimensions,
            seconds=round(time.perf_counter() - started, 3),
            gb=footprint,
        )
        return footprint

    def _trained_context(self) -> int | None:
        """The GGUF's ``<arch>.context_length``, read with the vocabulary only (milliseconds)."""
        vocab = llama_cpp.Llama(model_path=str(self.path), vocab_only=True, verbose=False)
        try:
            arch = vocab.metadata.get("general.architecture", "")
            value = vocab.metadata.get(f"{arch}.context_length")
            return int(value) if value else None
        finally:
            vocab.close()

    def _open(self, context: int) -> Any:
        return llama_cpp.Llama(
            model_path=str(self.path),
            embedding=True,
            n_ctx=context,
            n_batch=context,
            n_ubatch=context,
            pooling_type=_POOLING[self.options.pooling],
            n_gpu_layers=self.options.n_gpu_layers,
            n_threads=self.options.threads,
            n_threads_batch=self.options.threads,
            verbose=False,
        )

    def unload(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.llm = None
        release_host_memory()

    def embed(self, texts: list[str], cancel: threading.Event) -> tuple[Any, int]:
        with self._lock:
            counts = [len(self.llm.tokenize(text.encode("utf-8"))) for text in texts]
            check_lengths(counts, self.context)
            rows: list[list[float]] = []
            for start in range(0, len(texts), _CHUNK):
                if cancel.is_set():
                    break
                rows.extend(self.llm.embed(texts[start : start + _CHUNK], truncate=False))
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dimensions)
        return (normalised(vectors) if self.options.normalize else vectors), sum(counts)
