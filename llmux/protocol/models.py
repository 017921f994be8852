"""``GET /v1/models``: the virtual models clients may name, with what clients read from them.

Beyond OpenAI's four fields: ``type`` (llm/asr/tts/embedding), ``context_length`` (and ``meta.n_ctx``,
where llama.cpp's server puts it), ``capabilities``, and ``status.value`` (loaded, loading or
unloaded, as llama.cpp's router reports residency; Open WebUI shows it). The list also carries
a top-level ``models`` array of the chat models with ``context_window``, which Codex decodes.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Residency = Literal["loaded", "loading", "unloaded", "parked"]
"""``parked``: warm in host RAM (``host_ram_budget_gb``), back faster than a cold load."""
Modality = Literal["text", "image", "audio", "embedding"]


class ModelMeta(msgspec.Struct):
    n_ctx: int | None
    """Tokens the context holds (prompt + completion); null when unknown until loaded."""


class Capabilities(msgspec.Struct, kw_only=True):
    vision: bool
    tools: bool
    input_modalities: list[Modality]
    output_modalities: list[Modality]


class ModelResidency(msgspec.Struct):
    value: Residency


class ModelCard(msgspec.Struct, kw_only=True):
    id: str
    """A virtual model name (what a request's ``model`` field takes)."""
    created: int
    owned_by: str
    object: str = "model"
    type: Literal["llm", "asr", "tts", "embedding"]
    description: str = ""
    context_length: int | None = None
    meta: ModelMeta = msgspec.field(default_factory=lambda: ModelMeta(None))
    capabilities: Capabilities
    status: ModelResidency


class CodexModel(msgspec.Struct, kw_only=True):
    """One entry of the ``models`` array Codex reads (its model catalogue format)."""

    slug: str
    display_name: str
    description: str
    context_window: int | None
    supported_in_api: bool = True
    visibility: str = "list"


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"
    models: list[CodexModel] = []
