"""GET /v1/models: every virtual model, loaded or not (LLMUX-API-002)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import FromPath

from llmux.api.wire import ModelCard, ModelList
from llmux.registry import Registry


def _card(request: Request[Any, Any, Any], name: str) -> ModelCard:
    return ModelCard(id=name, created=request.app.state.created, owned_by="llmux")


@get("/models")
async def list_models(request: Request[Any, Any, Any]) -> ModelList:
    registry: Registry = request.app.state.registry
    return ModelList([_card(request, name) for name in registry.virtual])


@get("/models/{model_id:path}")
async def get_model(request: Request[Any, Any, Any], model_id: FromPath[str]) -> ModelCard:
    registry: Registry = request.app.state.registry
    virtual, _ = registry.resolve(model_id.lstrip("/"))
    return _card(request, virtual.id)


HANDLERS = [list_models, get_model]
