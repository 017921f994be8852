"""GET /health and /health/ready, without a key (LLMUX-API-006), and GET /metrics (Prometheus).

``/health`` is the honest report (``ok``, ``degraded`` with reasons, ``shutting_down`` with a
503); ``/health/ready`` is the container health check: 200 while llmux accepts requests. A
broken model is degraded, not unready — restarting the server would not fix its weights.
"""

from __future__ import annotations

import time

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST

from llmux.api.openapi import Doc, json_of
from llmux.protocol.residency import Health, Readiness, VramInfo
from llmux.residency.controller import ResidencyController
from llmux.services.metrics import Metrics
from llmux.services.upstream import UpstreamService

HEALTH_DOC = Doc(other=((503, "Shutting down", json_of(Health)),))
READY_DOC = Doc(other=((503, "Not ready (shutting down)", json_of(Readiness)),))


class HealthController(Controller):
    @get("/health", sync_to_thread=False, opt={"openapi": HEALTH_DOC})
    def health(
        self,
        controller: NamedDependency[ResidencyController],
        started: NamedDependency[float],
        upstream: NamedDependency[UpstreamService],
    ) -> Response[Health]:
        used = round(controller.used_gb, 3)
        reasons = ["llmux is shutting down"] if controller.closing else controller.problems() + upstream.problems()
        status = "shutting_down" if controller.closing else "degraded" if reasons else "ok"
        return Response(
            Health(
                status=status,
                reasons=reasons,
                loaded=[m for m in controller.status() if m.state != "unloaded"],
                vram=VramInfo(
                    budget_gb=controller.budget_gb, used_gb=used, free_gb=round(controller.budget_gb - used, 3)
                ),
                queue_depth=controller.queue_depth,
                upstreams=upstream.status(),
                host_ram=controller.host_ram(),
                uptime_s=round(time.monotonic() - started, 1),
            ),
            status_code=503 if controller.closing else 200,
        )

    @get("/health/ready", sync_to_thread=False, opt={"openapi": READY_DOC})
    def ready(self, controller: NamedDependency[ResidencyController]) -> Response[Readiness]:
        if controller.closing:
            return Response(Readiness(False, "shutting down"), status_code=503, headers={"Retry-After": "5"})
        return Response(Readiness(True))

    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics(self, metrics: NamedDependency[Metrics]) -> Response[bytes]:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
