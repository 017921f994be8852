"""Operations API under /v1/admin, for keys with ``role: admin`` in api_keys.yaml.

    GET  /v1/admin/models                    physical models: state, footprint, leases, queue
    POST /v1/admin/models/{model}/load       make resident (returns when ready)
    POST /v1/admin/models/{model}/unload     evict once its requests finish
    POST /v1/admin/models/{model}/pin        never evict it to make room
    POST /v1/admin/models/{model}/unpin
    POST /v1/admin/speedtest                 GPU versus CPU on the same inference (TST-020/021)

``{model}`` is a physical id or a virtual name (which names its physical model).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Router, get, post
from litestar.params import FromPath, JSONBody

from llmux.auth import require_key
from llmux.registry import PhysicalModel, Registry
from llmux.residency.controller import ResidencyController, SlotView
from llmux.speedtest import SpeedTest, SpeedTestReport, SpeedTestRequest

ADMIN = {"admin": True}


class AdminModel(msgspec.Struct, kw_only=True):
    id: str
    type: str
    backend: str
    state: str
    vram_gb: float
    """Measured footprint after the first load, else the estimate."""
    estimate_gb: float
    measured: bool
    leases: int
    waiting: int
    pinned: bool
    loads: int
    last_error: str | None
    virtual: list[str]


class AdminModels(msgspec.Struct, kw_only=True):
    budget_gb: float
    used_gb: float
    queue_depth: int
    swaps: int
    models: list[AdminModel]


def _view(registry: Registry, v: SlotView) -> AdminModel:
    return AdminModel(
        id=v.model, type=v.type, backend=v.backend, state=v.state, vram_gb=v.vram_gb,
        estimate_gb=registry.physical[v.model].vram_gb, measured=v.measured, leases=v.leases,
        waiting=v.waiting, pinned=v.pinned, loads=v.loads, last_error=v.last_error,
        virtual=registry.virtual_of(v.model),
    )


def _physical(request: Request[Any, Any, Any], name: str) -> PhysicalModel:
    registry: Registry = request.app.state.registry
    return registry.physical.get(name) or registry.resolve(name)[1]


def _one(request: Request[Any, Any, Any], model_id: str) -> AdminModel:
    controller: ResidencyController = request.app.state.controller
    view = next(v for v in controller.snapshot() if v.model == model_id)
    return _view(request.app.state.registry, view)


@get("/models", opt=ADMIN)
async def list_physical(request: Request[Any, Any, Any]) -> AdminModels:
    controller: ResidencyController = request.app.state.controller
    registry: Registry = request.app.state.registry
    return AdminModels(
        budget_gb=controller.budget_gb, used_gb=round(controller.used_gb, 3), queue_depth=controller.queue_depth,
        swaps=controller.swaps, models=[_view(registry, v) for v in controller.snapshot()],
    )


@post("/models/{model:str}/load", opt=ADMIN, status_code=200)
async def load(request: Request[Any, Any, Any], model: FromPath[str]) -> AdminModel:
    spec = _physical(request, model)
    await request.app.state.controller.load(spec.id)
    return _one(request, spec.id)


@post("/models/{model:str}/unload", opt=ADMIN, status_code=200)
async def unload(request: Request[Any, Any, Any], model: FromPath[str]) -> AdminModel:
    spec = _physical(request, model)
    await request.app.state.controller.unload(spec.id)
    return _one(request, spec.id)


@post("/models/{model:str}/pin", opt=ADMIN, status_code=200)
async def pin(request: Request[Any, Any, Any], model: FromPath[str]) -> AdminModel:
    spec = _physical(request, model)
    request.app.state.controller.pin(spec.id, True)
    return _one(request, spec.id)


@post("/models/{model:str}/unpin", opt=ADMIN, status_code=200)
async def unpin(request: Request[Any, Any, Any], model: FromPath[str]) -> AdminModel:
    spec = _physical(request, model)
    request.app.state.controller.pin(spec.id, False)
    return _one(request, spec.id)


@post("/speedtest", opt=ADMIN, status_code=200)
async def speedtest(request: Request[Any, Any, Any], data: JSONBody[SpeedTestRequest]) -> SpeedTestReport:
    tester: SpeedTest = request.app.state.speedtest
    return await tester.run(data)


def router() -> Router:
    """The admin routes; the key guard with ``opt={"admin": True}`` lets only admin keys in."""
    return Router(path="/v1/admin", route_handlers=[list_physical, load, unload, pin, unpin, speedtest],
                  guards=[require_key])
