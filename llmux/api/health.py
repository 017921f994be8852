"""GET /health, without a key (LLMUX-API-006): status, resident models, VRAM."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, get

from llmux.api.wire import Health, LoadedModel, VramInfo
from llmux.registry import Registry
from llmux.residency.controller import ResidencyController


@get("/health")
async def health(request: Request[Any, Any, Any]) -> Health:
    controller: ResidencyController = request.app.state.controller
    registry: Registry = request.app.state.registry
    loaded = [
        LoadedModel(
            model=s.model,
            type=s.type,
            state=s.state,
            vram_gb=s.vram_gb,
            measured=s.measured,
            leases=s.leases,
            waiting=s.waiting,
            virtual=registry.virtual_of(s.model),
        )
        for s in controller.snapshot()
        if s.state != "unloaded"
    ]
    used = round(controller.used_gb, 3)
    return Health(
        status="ok",
        loaded=loaded,
        vram=VramInfo(budget_gb=controller.budget_gb, used_gb=used, free_gb=round(controller.budget_gb - used, 3)),
        queue_depth=controller.queue_depth,
        uptime_s=round(time.monotonic() - request.app.state.started, 1),
    )
