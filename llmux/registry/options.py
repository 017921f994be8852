"""Per-backend ``options:`` Structs, keyed by the ``backend:`` name in models.yaml.

Kept free of runtime imports so that ``llmux check`` validates a config without torch.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from llmux.registry.config import Strict

Threads = Annotated[int, msgspec.Meta(ge=1, le=512)]
Pooling = Literal["model", "mean", "cls", "last"]
"""Embedding models: how token vectors become one vector; ``model`` takes what the checkpoint
says (a GGUF's ``pooling_type``, a sentence-transformers ``1_Pooling`` config; else mean)."""


class TransformersOptions(Strict, frozen=True):
    device: str = "cuda"
    """``cuda``, ``cuda:1`` or ``cpu``; ``cuda`` falls back to cpu when no GPU is present."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_context: Annotated[int, msgspec.Meta(ge=256)] | None = None
    """Cap on prompt + completion tokens; defaults to the model's own limit."""
    threads: Threads | None = None
    max_parallel: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    """Sequences decoded together (continuous batching). The planner's footprint counts a full
    ``max_context`` of cache for each. 1 runs one request at a time."""
    pooling: Pooling = "model"
    """Embedding models only."""
    normalize: bool = True
    """Embedding models only: unit-length vectors (as OpenAI's are; cosine = dot product)."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    """Embedding models only: inputs per forward pass."""


class LlamaCppOptions(Strict, frozen=True):
    mmproj: str | None = None
    """Vision encoder GGUF, relative to ``models_dir`` or absolute."""
    n_gpu_layers: int = -1
    """-1 offloads every layer; 0 runs on the CPU."""
    n_ctx: Annotated[int, msgspec.Meta(ge=256)] = 16384
    threads: Threads | None = None
    chat_template: str | None = None
    """Override the template stored in the GGUF (a Jinja string)."""
    max_parallel: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    """Sequences decoded together (continuous batching). Each holds a full ``n_ctx`` of KV
    cache, allocated at load: memory grows with it. 1 runs one request at a time."""
    pooling: Pooling = "model"
    """Embedding models only."""
    normalize: bool = True
    """Embedding models only: unit-length vectors (as OpenAI's are; cosine = dot product)."""


class ChatterboxOptions(Strict, frozen=True):
    variant: Literal["standard", "turbo", "multilingual"] = "standard"
    device: str = "cuda"
    """``cuda`` falls back to cpu when no GPU is present."""
    exaggeration: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.5
    """Emotion intensity (standard and multilingual; Turbo has none)."""
    cfg_weight: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    temperature: Annotated[float, msgspec.Meta(gt=0, le=2)] = 0.8


class FasterWhisperOptions(Strict, frozen=True):
    device: str = "auto"
    compute_type: str = "default"
    threads: Threads | None = None
    workers: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2
    """Transcriptions CTranslate2 runs at once; more requests queue inside it."""
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1


class HibariOptions(Strict, frozen=True):
    threads: Threads | None = None


class OpenAIOptions(Strict, frozen=True):
    """A remote OpenAI-compatible server (vLLM, llama.cpp's ``llama-server``, another llmux)
    that serves this physical model: llmux relays requests to it and holds no weights."""

    base_url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+")]
    """The upstream's API root, e.g. ``http://gpu-box:8000/v1`` (the part before ``/chat/completions``)."""
    model: str | None = None
    """The upstream's name for the model (``--served-model-name`` in vLLM); default: this physical model's id."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer ...`` to the upstream; never logged."""
    api_key_env: str | None = None
    """Or the name of an environment variable that holds the key (read at start-up)."""
    connect_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    read_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    """Longest silence from the upstream: before its response headers, and between two chunks
    of a stream (a model loading over there sends nothing for a while)."""
    health_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """How often ``GET {base_url}/models`` is polled; while it fails, requests get a 503 at once."""
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 64
    context_length: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """What ``/v1/models`` reports as the context length (the upstream's own limit, if known)."""


BACKEND_OPTIONS: dict[str, type[Strict]] = {
    "transformers": TransformersOptions,
    "llamacpp": LlamaCppOptions,
    "chatterbox": ChatterboxOptions,
    "faster-whisper": FasterWhisperOptions,
    "hibari": HibariOptions,
    "openai": OpenAIOptions,
}
"""Every backend name models.yaml may use. A backend's runtime registers its factory in
``llmux.engines.factory``; this table only validates configuration."""
