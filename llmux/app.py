"""create_app: wiring only. Builds the services, hands them to the controllers by dependency
injection, and owns the residency controller's lifetime (the lifespan unloads every model)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from llmux import __version__
from llmux.api.admin import AdminController
from llmux.api.audio import AudioController
from llmux.api.auth import KeyRing, RequireKey
from llmux.api.chat import ChatController
from llmux.api.dashboard import EventsController, UiController
from llmux.api.disconnect import cancel_on_disconnect
from llmux.api.embeddings import EmbeddingsController
from llmux.api.errors import EXCEPTION_HANDLERS
from llmux.api.health import HealthController
from llmux.api.middleware import canonical_line
from llmux.api.models import ModelsController
from llmux.api.openapi import DocumentedJson
from llmux.api.realtime import RealtimeController
from llmux.api.responses import ResponsesController
from llmux.api.usage import UsageController
from llmux.api.voice_page import VoicePageController
from llmux.engines.factory import create_engine
from llmux.engines.worker import run_in_thread
from llmux.registry import ApiKeysFile, Registry
from llmux.residency.controller import ResidencyController
from llmux.residency.slots import EngineFactory
from llmux.services.access import Access
from llmux.services.audio import AudioService
from llmux.services.chat import ChatService
from llmux.services.embeddings import EmbeddingsService
from llmux.services.keys import KeyStore
from llmux.services.metrics import Metrics
from llmux.services.models import ModelsService
from llmux.services.pins import FILE_NAME as PINS_FILE
from llmux.services.pins import PinFile
from llmux.services.preload import preloader
from llmux.services.realtime_config import RealtimeService
from llmux.services.responses import ResponsesService
from llmux.services.speedtest import SpeedTest, gpu_present
from llmux.services.upstream import UpstreamService
from llmux.services.usage import FILE_NAME, UsageService, UsageStore

MB = 1024 * 1024


@dataclass(frozen=True)
class Services:
    """Everything the controllers are given; also on ``app.state.services`` for tests."""

    registry: Registry
    controller: ResidencyController
    chat: ChatService
    responses: ResponsesService
    audio: AudioService
    embeddings: EmbeddingsService
    speedtest: SpeedTest
    metrics: Metrics
    models: ModelsService
    realtime: RealtimeService
    upstream: UpstreamService
    """Remote ``openai`` models: one HTTP client and health poll per upstream."""
    started: float
    """``time.monotonic()`` at start-up (``/health`` reports the uptime)."""
    created: int
    """Unix time at start-up (the ``created`` of every model card)."""
    keys: KeyStore
    access: Access
    usage: UsageService
    pins: PinFile
    """Admin pins kept across restarts (``<data_dir>/pins.json``)."""

    def dependencies(self) -> dict[str, Provide]:
        def value(v: Any) -> Provide:
            return Provide(lambda: v, use_cache=True, sync_to_thread=False)

        return {name: value(getattr(self, name)) for name in self.__dataclass_fields__}


def create_app(
    registry: Registry,
    keys: ApiKeysFile,
    *,
    factory: EngineFactory = create_engine,
    shutdown_grace_s: float = 30.0,
    keepalive_s: float = 5.0,
    gpu_probe: Callable[[], bool] = gpu_present,
    data_dir: Path | None = None,
    keys_path: Path | None = None,
    allow_weak_keys: bool = True,
    usage_flush_s: float = 5.0,
) -> Litestar:
    """``data_dir`` None: usage in memory only; ``keys_path``: where ``keys`` came from (a
    reload reads it again; None: no reload)."""
    controller = ResidencyController(registry, factory)
    created = int(time.time())
    chat = ChatService(registry, controller, keepalive_s=keepalive_s, shutdown_grace_s=shutdown_grace_s)
    audio_service = AudioService(registry, controller)
    upstream = UpstreamService(
        registry, keepalive_s=keepalive_s, closing=lambda: controller.closing, cutoff=chat.cutoff
    )
    services = Services(
        registry=registry,
        controller=controller,
        chat=chat,
        responses=ResponsesService(chat),
        audio=audio_service,
        embeddings=EmbeddingsService(registry, controller),
        speedtest=SpeedTest(registry, controller, factory, gpu_probe=gpu_probe),
        metrics=Metrics(controller),
        realtime=RealtimeService(registry, controller, chat, audio_service),
        models=ModelsService(registry, controller, created, upstream),
        upstream=upstream,
        started=time.monotonic(),
        created=created,
        keys=KeyStore(keys, registry, path=keys_path, allow_weak=allow_weak_keys),
        access=Access(registry),
        usage=UsageService(UsageStore(data_dir / FILE_NAME if data_dir else None, flush_s=usage_flush_s)),
        pins=PinFile(data_dir / PINS_FILE if data_dir else None),
    )
    services.pins.apply(controller)  # admin pins saved by an earlier run (config pins are applied already)
    services.metrics.registry.register(upstream)  # llmux_upstream_up
    store = services.usage.store

    def request_done(record: dict[str, Any]) -> None:
        services.metrics.request_done(record)
        services.access.request_done(record)
        store.request_done(record)

    services.realtime.observe = request_done  # each realtime response is accounted like a request

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store.start()
        upstream.start()
        try:
            yield
        finally:
            await controller.shutdown(shutdown_grace_s)
            await upstream.close()
            await run_in_thread(lambda _: store.close(), name="usage-close")

    ring = KeyRing(keys)
    services.keys.on_change(ring.replace)
    guard = RequireKey(ring, services.access)
    v1 = Router(
        path="/v1",
        route_handlers=[
            ChatController,
            ResponsesController,
            ModelsController,
            AdminController,
            EmbeddingsController,
            UsageController,
            RealtimeController,
        ],
        guards=[guard],
        request_max_body_size=int(registry.limits.max_request_mb * MB),
    )
    # Uploads may be as large as the audio limit plus the multipart framing; the service
    # refuses a larger file with a 413 naming the limit.
    audio = Router(
        path="/v1",
        route_handlers=[AudioController],
        guards=[guard],
        request_max_body_size=int(registry.limits.max_audio_mb * MB) + MB,
    )
    # The dashboard's page is open (it holds no data); its feed is an admin route.
    dashboard = Router(path="/v1", route_handlers=[EventsController], guards=[guard])
    return Litestar(
        route_handlers=[HealthController, v1, audio, dashboard, UiController, VoicePageController],
        dependencies=services.dependencies(),
        state=State({"services": services}),
        lifespan=[lifespan, preloader(controller, registry)],  # exited in reverse: preload stops first
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            canonical_line(request_done),
            cancel_on_disconnect(registry.limits.stall_timeout_s, registry.limits.request_timeout_s),
        ],
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="llmux",
            version=__version__,
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), DocumentedJson()],  # the JSON: every body documented
        ),
    )
