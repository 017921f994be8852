"""GET /health, without a key (LLMUX-API-006), and GET /metrics (Prometheus)."""

from __future__ import annotations

import time

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST

from llmux.protocol.residency import Health, VramInfo
from llmux.residency.controller import ResidencyController
from llmux.services.metrics import Metrics


class HealthController(Controller):
    @get("/health")
    async def health(self, controller: NamedDependency[ResidencyController], started: NamedDependency[float]) -> Health:
        used = round(controller.used_gb, 3)
        return Health(
            status="ok",
            loaded=[m for m in controller.status() if m.state != "unloaded"],
            vram=VramInfo(budget_gb=controller.budget_gb, used_gb=used, free_gb=round(controller.budget_gb - used, 3)),
            queue_depth=controller.queue_depth,
            uptime_s=round(time.monotonic() - started, 1),
        )

    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics(self, metrics: NamedDependency[Metrics]) -> Response[bytes]:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
