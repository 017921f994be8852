"""GET /v1/models: every virtual model, loaded or not (LLMUX-API-002), with its metadata."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from llmux.protocol.models import ModelCard, ModelList
from llmux.services.models import ModelsService


class ModelsController(Controller):
    path = "/models"

    @get("/")
    async def list_models(self, models: NamedDependency[ModelsService]) -> ModelList:
        return models.list()

    @get("/{model_id:path}")
    async def get_model(self, model_id: FromPath[str], models: NamedDependency[ModelsService]) -> ModelCard:
        return models.card(model_id.lstrip("/"))
