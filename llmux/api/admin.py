"""Operations API under /v1/admin, for keys with ``role: admin`` in api_keys.yaml.

    GET  /v1/admin/models                    physical models: state, footprint, leases, queue
    POST /v1/admin/models/{model}/load       make resident (returns when ready)
    POST /v1/admin/models/{model}/unload     evict once its requests finish
    POST /v1/admin/models/{model}/pin        never evict it to make room (kept across restarts)
    POST /v1/admin/models/{model}/unpin
    POST /v1/admin/models/{model}/reset      forget a broken model's failed loads (retry now)
    POST /v1/admin/speedtest                 GPU versus CPU on the same inference (TST-020/021)
    GET  /v1/admin/upstreams                 remote upstreams: state, last error, requests in flight
    GET  /v1/admin/usage                     every key's usage (start, end, client, group_by)
    POST /v1/admin/keys/reload               read api_keys.yaml again (as SIGHUP does)

``{model}`` is a physical id or a virtual name (which names its physical model).
"""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from llmux.protocol.admin import SpeedTestReport, SpeedTestRequest
from llmux.protocol.errors import LlmuxError
from llmux.protocol.residency import ModelStatus, Residency, Upstreams
from llmux.protocol.usage import KeysReloaded, UsageReport
from llmux.registry import Registry
from llmux.residency.controller import ResidencyController
from llmux.services.keys import KeyStore
from llmux.services.pins import PinFile
from llmux.services.speedtest import SpeedTest
from llmux.services.upstream import UpstreamService
from llmux.services.usage import UsageService


class KeysNotReloaded(LlmuxError):
    """The keys file is bad: the keys in force stay (the message says what is wrong)."""

    status = 422
    type = "invalid_request_error"
    code = "config_error"


def _physical_id(registry: Registry, name: str) -> str:
    return name if name in registry.physical else registry.resolve(name)[1].id


def _status(controller: ResidencyController, physical_id: str) -> ModelStatus:
    return next(m for m in controller.status() if m.id == physical_id)


class AdminController(Controller):
    """The key guard lets only admin keys in (``opt={"admin": True}``)."""

    path = "/admin"
    opt = {"admin": True}  # noqa: RUF012 (Litestar reads and merges this class attribute)

    @get("/models")
    async def models(self, controller: NamedDependency[ResidencyController]) -> Residency:
        return Residency(
            budget_gb=controller.budget_gb,
            used_gb=round(controller.used_gb, 3),
            queue_depth=controller.queue_depth,
            swaps=controller.swaps,
            models=controller.status(),
            host_ram=controller.host_ram(),
        )

    @get("/upstreams", sync_to_thread=False)
    def upstreams(self, upstream: NamedDependency[UpstreamService]) -> Upstreams:
        """What ``/health`` tells of them too, plus the relays in flight (the dashboard polls it)."""
        return Upstreams(upstreams=upstream.status())

    @post("/models/{model:str}/load", status_code=200)
    async def load(
        self,
        model: FromPath[str],
        registry: NamedDependency[Registry],
        controller: NamedDependency[ResidencyController],
    ) -> ModelStatus:
        physical = _physical_id(registry, model)
        await controller.load(physical)
        return _status(controller, physical)

    @post("/models/{model:str}/unload", status_code=200)
    async def unload(
        self,
        model: FromPath[str],
        registry: NamedDependency[Registry],
        controller: NamedDependency[ResidencyController],
    ) -> ModelStatus:
        physical = _physical_id(registry, model)
        await controller.unload(physical)
        return _status(controller, physical)

    @post("/models/{model:str}/pin", status_code=200)
    async def pin(
        self,
        model: FromPath[str],
        registry: NamedDependency[Registry],
        controller: NamedDependency[ResidencyController],
        pins: NamedDependency[PinFile],
    ) -> ModelStatus:
        physical = _physical_id(registry, model)
        controller.pin(physical, True)
        await pins.save(controller)
        return _status(controller, physical)

    @post("/models/{model:str}/unpin", status_code=200)
    async def unpin(
        self,
        model: FromPath[str],
        registry: NamedDependency[Registry],
        controller: NamedDependency[ResidencyController],
        pins: NamedDependency[PinFile],
    ) -> ModelStatus:
        physical = _physical_id(registry, model)
        controller.pin(physical, False)
        await pins.save(controller)
        return _status(controller, physical)

    @post("/models/{model:str}/reset", status_code=200)
    async def reset(
        self,
        model: FromPath[str],
        registry: NamedDependency[Registry],
        controller: NamedDependency[ResidencyController],
    ) -> ModelStatus:
        physical = _physical_id(registry, model)
        controller.reset(physical)
        return _status(controller, physical)

    @post("/speedtest", status_code=200)
    async def speedtest(
        self, data: JSONBody[SpeedTestRequest], speedtest: NamedDependency[SpeedTest]
    ) -> SpeedTestReport:
        return await speedtest.run(data)

    @get("/usage")
    async def usage(
        self,
        usage: NamedDependency[UsageService],
        start: FromQuery[str | None] = None,
        end: FromQuery[str | None] = None,
        client: FromQuery[str | None] = None,
        group_by: FromQuery[str | None] = None,
    ) -> UsageReport:
        groups = ("client", "model", "day")
        return await usage.report(start=start, end=end, group_by=group_by, client=client, groups=groups)

    @post("/keys/reload", status_code=200)
    async def reload_keys(self, keys: NamedDependency[KeyStore]) -> KeysReloaded:
        try:
            reloaded = keys.reload()
        except LlmuxError as exc:
            raise KeysNotReloaded(exc.message) from None
        return KeysReloaded(clients=[k.name for k in reloaded.keys])
