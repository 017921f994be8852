"""What ``/v1/models`` says about each virtual model: its type, context length, capabilities and
residency, from the config and — once the model is loaded — from its runtime (a loaded engine's
``context`` is the real context size, e.g. llama.cpp's ``n_ctx``)."""

from __future__ import annotations

from typing import Any

import msgspec

from llmux.protocol.models import (
    Capabilities,
    CodexModel,
    Modality,
    ModelCard,
    ModelList,
    ModelMeta,
    ModelResidency,
    Residency,
)
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.registry.options import BACKEND_OPTIONS
from llmux.registry.registry import unknown_model
from llmux.residency.controller import ResidencyController
from llmux.services.access import allowed
from llmux.services.upstream import UpstreamService

_RESIDENCY: dict[str, Residency] = {
    "ready": "loaded",
    "serving": "loaded",
    "loading": "loading",
    "unparking": "loading",
    "parked": "parked",
}
"""Lifecycle state -> what clients see; ``evicting`` is ``unloaded``: the next request loads again."""

_MODALITIES: dict[ModelType, tuple[list[Modality], list[Modality]]] = {
    ModelType.LLM: (["text"], ["text"]),
    ModelType.ASR: (["audio"], ["text"]),
    ModelType.TTS: (["text"], ["audio"]),
    ModelType.EMBEDDING: (["text"], ["embedding"]),
}


class ModelsService:
    def __init__(
        self, registry: Registry, controller: ResidencyController, created: int, upstream: UpstreamService | None = None
    ) -> None:
        self.registry = registry
        self.controller = controller
        self.created = created
        self.upstream = upstream

    def list(self) -> ModelList:
        cards = [self.card(name) for name in self.registry.virtual if allowed(name)]
        codex = [
            CodexModel(slug=c.id, display_name=c.id, description=c.description, context_window=c.context_length)
            for c in cards
            if c.type == "llm"
        ]
        return ModelList(cards, models=codex)

    def card(self, name: str) -> ModelCard:
        if not allowed(name):  # worded as for a model that does not exist (services.access)
            raise unknown_model(name)
        virtual, physical = self.registry.resolve(name)
        if physical.remote:  # loaded while its upstream answers its health poll
            state, engine = ("ready" if self.upstream and self.upstream.healthy(physical.id) else "unloaded"), None
        else:
            state, engine = self.controller.residency(physical.id)
        context = _context(physical, engine)
        inputs, outputs = _MODALITIES[physical.type]
        return ModelCard(
            id=virtual.id,
            created=self.created,
            owned_by="llmux",
            type=physical.type.value,
            description=virtual.description,
            context_length=context,
            meta=ModelMeta(context),
            capabilities=Capabilities(
                vision=physical.vision,
                tools=physical.tools,
                input_modalities=[*inputs, "image"] if physical.vision else inputs,
                output_modalities=outputs,
            ),
            status=ModelResidency(_RESIDENCY.get(state, "unloaded")),
        )


def _context(physical: PhysicalModel, engine: Any) -> int | None:
    """The loaded runtime's context size, else what the config sets (None: the model's own
    limit, known once loaded)."""
    if physical.type not in (ModelType.LLM, ModelType.EMBEDDING):
        return None
    loaded = getattr(engine, "context", None)
    if isinstance(loaded, int) and loaded > 0:
        return loaded
    if physical.type is ModelType.EMBEDDING:
        return None  # its options only cap the model's own limit, known once loaded
    options = msgspec.convert(physical.options, BACKEND_OPTIONS[physical.backend])
    configured = (
        getattr(options, "n_ctx", None)
        or getattr(options, "max_context", None)
        or getattr(options, "context_length", None)
    )
    return configured if isinstance(configured, int) else None
