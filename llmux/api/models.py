"""GET /v1/models: every virtual model, loaded or not (LLMUX-API-002)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from llmux.protocol.models import ModelCard, ModelList
from llmux.registry import Registry


class ModelsController(Controller):
    path = "/models"

    @get("/")
    async def list_models(self, registry: NamedDependency[Registry], created: NamedDependency[int]) -> ModelList:
        return ModelList([ModelCard(id=name, created=created, owned_by="llmux") for name in registry.virtual])

    @get("/{model_id:path}")
    async def get_model(
        self, model_id: FromPath[str], registry: NamedDependency[Registry], created: NamedDependency[int]
    ) -> ModelCard:
        virtual, _ = registry.resolve(model_id.lstrip("/"))
        return ModelCard(id=virtual.id, created=created, owned_by="llmux")
