"""The shapes of ``models.yaml`` and ``api_keys.yaml``: strict, frozen msgspec Structs.

Strict on config: unknown fields are errors, so a typo never silently falls back to a default.
Per-backend ``options`` are validated against the Struct each backend registers
(``llmux.registry.options``), so this module stays free of runtime imports.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Annotated, Any, Literal

import msgspec


class Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Base of every config Struct (options are inherited by subclasses)."""


PositiveGB = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeGB = Annotated[float, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")]


class ModelType(enum.StrEnum):
    """What a physical model does. The value order is not the eviction order: see ``priority``."""

    LLM = "llm"
    ASR = "asr"
    TTS = "tts"
    EMBEDDING = "embedding"

    @property
    def priority(self) -> int:
        """Default eviction priority (LLMUX-VRAM-002): lower is evicted first. A models.yaml
        may move ``embedding`` (``eviction_order``); the registry's ``priority`` is the one in force."""
        return DEFAULT_EVICTION_ORDER.index(self)


DEFAULT_EVICTION_ORDER: tuple[ModelType, ...] = (ModelType.LLM, ModelType.EMBEDDING, ModelType.TTS, ModelType.ASR)
"""Evicted first to last. The requirements fix LLM < TTS < ASR; embeddings sit after the LLM and
before speech by default: an embedding model is small (0.1-1 GB), so evicting it rarely frees
enough room while the LLM (the largest model, rebuilt from the page cache anyway) is there to
go, and a RAG turn embeds the question right before the chat that answers it. It still goes
before TTS and ASR, because a voice loop waits on them in real time, while an embedding reload
costs a second of a batch job or a retrieval step. ``eviction_order`` in models.yaml moves it."""

ChatFamily = Literal["qwen3.5", "gpt-oss", "chatml"]


class PhysicalModel(Strict, frozen=True):
    """One set of weights that occupies VRAM when loaded."""

    type: ModelType
    backend: Identifier
    weights: str = ""
    """A directory or file, absolute or relative to ``models_dir`` (required, except for a
    remote ``openai`` upstream, which has none)."""
    vram_gb: NonNegativeGB = 0.0
    """Estimated footprint; replaced by the measured one after the first load. Required and
    > 0 for a local backend (the loader checks); 0 for a remote upstream."""
    vision: bool = False
    tools: bool = False
    family: ChatFamily | None = None
    """Chat template / output parser family for LLMs."""
    hf_repo: str | None = None
    """Where ``llmux download`` fetches the weights from."""
    hf_files: tuple[str, ...] = ()
    """Download only these files of ``hf_repo`` (GGUF repositories hold many quantisations)."""
    options: dict[str, Any] = {}
    """Backend-specific settings, checked against the backend's options Struct."""
    matryoshka: bool = False
    """Embedding models: trained so that a prefix of the vector is itself an embedding
    (Matryoshka representation learning). Only then does a request's ``dimensions`` truncate
    (and renormalise) the vectors; otherwise ``dimensions`` is a 400."""
    max_queue: Annotated[int, msgspec.Meta(ge=1)] = 32
    """Requests for this model at once, running or waiting; beyond it a 429 with ``Retry-After``."""
    load_timeout_s: Seconds = 300.0
    """A load still running after this long fails its waiters (503) and marks the model broken;
    its thread is abandoned (whatever it loads when it returns is unloaded again)."""
    load_backoff_s: Seconds = 30.0
    """After a failed or timed-out load the model is refused (503 with ``Retry-After``) for this
    long, doubling with each further failure (at most 16×), until an admin reset."""
    id: str = ""
    """Filled from the key under ``physical:``."""

    @property
    def remote(self) -> bool:
        """Served by another OpenAI-compatible server: no local weights, no VRAM, no residency."""
        return self.backend == REMOTE_BACKEND


REMOTE_BACKEND = "openai"
"""The backend of a physical model that is another server (``llmux.engines.upstream``)."""


class Sampling(Strict, frozen=True):
    """A virtual model's default sampling; a request's own values win."""

    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    min_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    repetition_penalty: Annotated[float, msgspec.Meta(gt=0, le=2)] | None = None


class Behaviour(Strict, frozen=True):
    """How a virtual model changes the request before it reaches the physical model."""

    thinking: bool | None = None
    """Qwen3.5: render the chat template with ``enable_thinking`` set to this."""
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    """gpt-oss: prepend ``Reasoning: <level>`` to the system prompt."""
    language: str | None = None
    """TTS/ASR: default language."""
    voice: str | None = None
    """TTS: default voice."""
    sampling: Sampling = Sampling()
    """LLMs: default sampling (e.g. the model card's recommended settings)."""
    system_prompt: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    """LLMs: a fixed instruction, the first thing in the system message (a client's own system
    message follows it). An OCR model is a vision LLM with "transcribe the text in the image"."""


class VirtualModel(Strict, frozen=True):
    """A name clients use; maps to one physical model plus a behaviour."""

    physical: Identifier
    behaviour: Behaviour = Behaviour()
    description: str = ""
    id: str = ""
    """Filled from the key under ``virtual:``."""


class Limits(Strict, frozen=True):
    max_wait_s: Seconds = 15.0
    """Longest the switch policy keeps a request waiting while another model serves; then the
    swap is forced (the request still waits for that one switch)."""
    vram_headroom_gb: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    """Free device memory a load wants beyond the model's footprint (CUDA context, activations)."""
    max_request_mb: PositiveGB = 10.0
    """Largest JSON request body (chat with inline images)."""
    max_audio_mb: PositiveGB = 25.0
    """Largest transcription upload."""
    remote_images: bool = False
    """Fetch ``http(s)`` image URLs. Off by default: a server that fetches any URL is an SSRF hole."""
    remote_images_allow: tuple[str, ...] = ()
    """Networks (CIDR, e.g. ``192.168.1.0/24``) remote image URLs may name although they are not
    public: loopback, private, link-local and metadata addresses are refused otherwise, at
    every redirect hop."""
    remote_image_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """The whole fetch of one image URL (every redirect, headers and body)."""
    max_audio_s: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    """Longest transcription, checked while decoding (an hour is 230 MB of samples)."""
    max_images: Annotated[int, msgspec.Meta(ge=1)] = 16
    """Images in one chat request."""
    max_image_pixels: Annotated[int, msgspec.Meta(ge=1)] = 16_777_216
    """Pixels of one image (4096 × 4096), checked from its header before it is decoded."""
    max_messages: Annotated[int, msgspec.Meta(ge=1)] = 2048
    """Messages in one chat request (rendering and tokenising grow with them, holding the turn)."""
    max_stop: Annotated[int, msgspec.Meta(ge=1)] = 16
    """``stop`` entries (each is matched against every generated piece; OpenAI allows 4)."""
    max_tools: Annotated[int, msgspec.Meta(ge=1)] = 128
    max_tool_schema_depth: Annotated[int, msgspec.Meta(ge=1)] = 32
    """Nesting of one tool's ``parameters`` schema (it is rendered into the prompt)."""
    max_tool_schema_kb: Annotated[float, msgspec.Meta(gt=0)] = 256.0
    """All tool schemas of one request together, JSON-encoded."""
    max_queue: Annotated[int, msgspec.Meta(ge=1)] = 128
    """Requests for all models at once, running or waiting; beyond it a 429 with ``Retry-After``."""
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 900.0
    """Any request still running after this long is cancelled (504, or its stream ends)."""
    stall_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """A response whose client reads nothing for this long is ended (its lease released)."""
    max_embedding_inputs: Annotated[int, msgspec.Meta(ge=1)] = 2048
    """Inputs in one embeddings request (OpenAI's limit)."""
    max_embedding_input_chars: Annotated[int, msgspec.Meta(ge=1)] = 65_536
    """Characters of one embeddings input, checked before the lease; its tokens are checked
    against the model's context once tokenised."""

    def __post_init__(self) -> None:
        for cidr in self.remote_images_allow:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"remote_images_allow: {exc}") from None


class ModelsFile(Strict, frozen=True):
    """``models.yaml``."""

    budget_gb: PositiveGB = 16.0
    host_ram_budget_gb: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    """Host RAM for the warm tier: evicted models whose runtime can park keep their weights
    loaded in host memory, up to this much, and come back without a cold load. 0 turns it off."""
    models_dir: str = "/models"
    voices_dir: str | None = None
    limits: Limits = Limits()
    physical: dict[str, dict[str, Any]] = {}
    virtual: dict[str, dict[str, Any]] = {}
    preload: tuple[str, ...] = ()
    """Models (physical or virtual names) loaded at start-up, ASR first, then TTS, then LLM, each
    only while it fits beside those already loaded; requests are served meanwhile."""
    pinned: tuple[str, ...] = ()
    """Models (physical or virtual names) never evicted to make room once loaded, from start-up
    on (an admin unpin lasts until the next restart; admin pins are kept in ``data_dir``)."""
    eviction_order: tuple[ModelType, ...] = DEFAULT_EVICTION_ORDER
    """Model types evicted first to last; every type once, ``llm`` before ``tts`` before ``asr``
    (LLMUX-VRAM-002): only where ``embedding`` sits is a choice."""
    aliases: dict[str, str] = {}
    """Other names for virtual models (OpenAI's ``whisper-1``, ``tts-1``, ``tts-1-hd``): accepted
    wherever a model is named, not listed by ``/v1/models``."""
    data_dir: str | None = None
    """Where llmux keeps its state (the per-key usage database), absolute or relative to this
    file's directory; ``llmux serve --data-dir`` wins, and without either it is ``/var/lib/llmux``."""


PerMinute = Annotated[int, msgspec.Meta(ge=1)]


class KeyLimits(Strict, frozen=True):
    """One client's rate limits (none by default); over one, a 429 with ``Retry-After``."""

    requests_per_minute: PerMinute | None = None
    tokens_per_minute: PerMinute | None = None
    """Prompt and completion tokens: a request reserves an estimate when admitted and is
    settled with what it really used when it ends."""
    concurrent_requests: Annotated[int, msgspec.Meta(ge=1)] | None = None


class ApiKey(Strict, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    key: Annotated[str, msgspec.Meta(min_length=16)]
    role: Literal["user", "admin"] = "user"
    models: tuple[str, ...] | None = None
    """The virtual models (or aliases) this key may use; None: all of them. A model it may not
    use is a 404, as if it did not exist, and is not listed by ``/v1/models``."""
    limits: KeyLimits = KeyLimits()


class ApiKeysFile(Strict, frozen=True):
    """``api_keys.yaml``: one key per client."""

    keys: tuple[ApiKey, ...]
