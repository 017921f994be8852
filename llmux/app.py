"""create_app: the Litestar application, its routes, and the lifespan that owns the controller."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from llmux import __version__
from llmux.api import admin, chat, models
from llmux.api.errors import EXCEPTION_HANDLERS
from llmux.api.health import health
from llmux.api.middleware import request_log
from llmux.auth import KeyRing, require_key
from llmux.backends.factory import create_backend
from llmux.chat.service import ChatService
from llmux.metrics import Metrics, metrics_endpoint
from llmux.registry import ApiKeysFile, Registry
from llmux.residency.controller import BackendFactory, ResidencyController
from llmux.speedtest import SpeedTest, gpu_present

MB = 1024 * 1024


def extra_routers(registry: Registry) -> list[Router]:
    """Routers of the optional feature modules (audio, admin, metrics), each guarded as needed."""
    from llmux.api import audio

    return [audio.router(registry, [require_key]), admin.router()]


def create_app(
    registry: Registry,
    keys: ApiKeysFile,
    *,
    factory: BackendFactory = create_backend,
    shutdown_grace_s: float = 30.0,
    keepalive_s: float = 5.0,
    gpu_probe: Callable[[], bool] = gpu_present,
) -> Litestar:
    controller = ResidencyController(registry, factory)
    chat_service = ChatService(registry, controller, keepalive_s=keepalive_s)
    metrics = Metrics(controller)
    chat_service.observers.append(metrics.chat_completed)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await controller.shutdown(shutdown_grace_s)

    v1 = Router(
        path="/v1",
        route_handlers=[*chat.HANDLERS, *models.HANDLERS],
        guards=[require_key],
        request_max_body_size=int(registry.limits.max_request_mb * MB),
    )
    state = State(
        {
            "registry": registry,
            "keyring": KeyRing(keys),
            "controller": controller,
            "chat": chat_service,
            "metrics": metrics,
            "speedtest": SpeedTest(registry, controller, chat_service, factory, gpu_probe=gpu_probe),
            "started": time.monotonic(),
            "created": int(time.time()),
        }
    )
    return Litestar(
        route_handlers=[health, metrics_endpoint, v1, *extra_routers(registry)],
        state=state,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_log, metrics.middleware],
        logging_config=None,
        openapi_config=OpenAPIConfig(title="llmux", version=__version__, path="/schema"),
    )
