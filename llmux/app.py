"""create_app: the Litestar application, its routes, and the lifespan that owns the controller."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from llmux import __version__
from llmux.api import chat, models
from llmux.api.errors import EXCEPTION_HANDLERS
from llmux.api.health import health
from llmux.api.middleware import request_log
from llmux.auth import KeyRing, require_key
from llmux.backends.factory import create_backend
from llmux.chat.service import ChatService
from llmux.registry import ApiKeysFile, Registry
from llmux.residency.controller import BackendFactory, ResidencyController

MB = 1024 * 1024


def extra_routers(registry: Registry) -> list[Router]:
    """Routers of the optional feature modules (audio, admin, metrics), each guarded as needed."""
    return []


def create_app(
    registry: Registry,
    keys: ApiKeysFile,
    *,
    factory: BackendFactory = create_backend,
    shutdown_grace_s: float = 30.0,
    keepalive_s: float = 5.0,
) -> Litestar:
    controller = ResidencyController(registry, factory)

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
            "chat": ChatService(registry, controller, keepalive_s=keepalive_s),
            "started": time.monotonic(),
            "created": int(time.time()),
        }
    )
    return Litestar(
        route_handlers=[health, v1, *extra_routers(registry)],
        state=state,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_log],
        logging_config=None,
        openapi_config=OpenAPIConfig(title="llmux", version=__version__, path="/schema"),
    )
