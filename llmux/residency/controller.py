"""The one owner of residency state: leases, the wait queue, loads and evictions.

Every decision is made in a synchronous method on the event loop (``_pump``), so no decision
is ever taken from a read that an ``await`` made stale. The only awaits are in the swap task,
which performs one plan at a time: drain the victims, unload them, load the target.

Fairness. Waiters are considered in arrival order. A waiter whose model is resident gets its
lease at once, unless that model is draining for an earlier waiter's swap; the earliest waiter
whose model is not resident is the next swap. When that swap would evict a model in use, the
switch policy (``switch.decide``, on measured costs) may hold it for the resident model's
serving window — never past ``limits.max_wait_s`` of its oldest waiter — and a timer decides
again when the hold ends. Once started, the swap waits only for the leases held then.

Faults (``swap.py``): a model whose load failed or timed out is *broken* until its backoff
expires or an admin resets it; its waiters, and requests arriving meanwhile, get a 503 with
``Retry-After`` at once, and nothing is evicted for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import structlog

from llmux.protocol.errors import InvalidRequest, ModelCannotFit, ModelNotFound, ServiceUnavailable
from llmux.protocol.events import PinChanged
from llmux.protocol.residency import ModelStatus
from llmux.registry import Registry
from llmux.residency import admission, faults, planner
from llmux.residency.events import EventHub, LifecycleEvents
from llmux.residency.faults import broken_error
from llmux.residency.gate import SwitchGate, Timer, call_later
from llmux.residency.lifecycle import ModelLifecycle
from llmux.residency.park import HostTier
from llmux.residency.peak import PeakFootprint
from llmux.residency.slots import EngineFactory, Lease, Occupied, Offload, Slot, Waiter
from llmux.residency.swap import SwapExecutor
from llmux.residency.threads import in_daemon_thread

log = structlog.get_logger("llmux.residency")


class ResidencyController(HostTier, PeakFootprint, SwapExecutor, SwitchGate):
    """Decides which physical models are resident and hands out leases on them."""

    def __init__(
        self,
        registry: Registry,
        factory: EngineFactory,
        *,
        clock: Callable[[], float] = time.monotonic,
        offload: Offload = in_daemon_thread,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timer: Timer = call_later,
    ) -> None:
        self.registry = registry
        self.budget_gb = registry.budget_gb
        self.host_budget_gb = registry.host_ram_budget_gb
        self._factory = factory
        self._clock = clock
        self._offload = offload
        self._sleep = sleep
        self._init_gate(timer, registry.limits.max_wait_s)
        self._abandoned: set[asyncio.Future[object]] = set()
        self._slots = {
            mid: Slot(spec=spec, machine=ModelLifecycle(mid), footprint_gb=spec.vram_gb)
            for mid, spec in registry.physical.items()
            if not spec.remote  # an upstream holds no VRAM here: never planned, leased or evicted
        }
        for pinned in registry.pinned:  # config pins hold from the start (and so across restarts)
            self._slots[pinned].pinned = True
        self._queue: list[Waiter] = []
        self._swap: asyncio.Task[None] | None = None
        self._closing = False
        self._closing_at: float | None = None
        self.stopping = asyncio.Event()
        """Set when shutdown begins (the in-flight requests' grace starts)."""
        self.swaps = 0
        self.events = EventHub(self)
        """Every state change, lease, waiter and swap, for ``GET /v1/admin/events``."""
        self.add_listener(
            LifecycleEvents(
                self.events,
                used_gb=lambda: self.used_gb,
                error_of=lambda m: self._slots[m].last_error,
                expected_s=lambda m, phase: round(self.costs.estimate(m, phase), 3) or None,
                host_gb=lambda m: self._slots[m].host_gb,
            )
        )

    # ---- public API -------------------------------------------------------------------------

    async def acquire(self, model_id: str) -> Lease:
        """Wait until ``model_id`` is resident and take a lease on it; ``release`` gives it back.

        Raises ``ModelCannotFit`` / ``ModelLoadFailed`` when it cannot be loaded; a caller that
        is cancelled while waiting leaves the queue without a trace.
        """
        slot = self._slot(model_id)
        self.admit(model_id)
        waiter = Waiter(model_id, asyncio.get_running_loop().create_future(), self._clock())
        self._queue.append(waiter)
        self._pump()
        try:
            await waiter.future
        except BaseException:
            if waiter.granted:
                self._release(slot)
            elif waiter in self._queue:
                self._queue.remove(waiter)
                log.info("lease.abandoned", model=model_id, waited_s=round(self._clock() - waiter.since, 3))
            self._pump()
            raise
        return Lease(model_id, slot.engine)

    def try_acquire(self, model_id: str) -> Lease | None:
        """A lease at once if the model is resident, not draining and nobody waits; else None.

        The fast path for the common case (the model is already there): no task, no future.
        """
        slot = self._slot(model_id)
        self.admit(model_id)
        if self._queue or slot.draining or slot.state not in ("ready", "serving"):
            return None
        self._take(slot)
        return Lease(model_id, slot.engine)

    def admit(self, model_id: str) -> None:
        """Refuse a request beyond the queue bounds (429) or while shutting down (503); services
        call it before a stream's headers go out, ``acquire`` again when the lease is asked for."""
        slot = self._slot(model_id)
        mine = slot.leases + sum(w.model == model_id for w in self._queue)
        everyone = len(self._queue) + sum(s.leases for s in self._slots.values())
        admission.check(slot, mine, everyone, self.registry.limits.max_queue, closing=self._closing)

    def release(self, lease: Lease) -> None:
        """Give a lease back; each lease exactly once."""
        self._release(self._slot(lease.model))

    @asynccontextmanager
    async def lease(self, model_id: str) -> AsyncIterator[Lease]:
        """``acquire`` and ``release`` around the body of an ``async with``."""
        held = await self.acquire(model_id)
        try:
            yield held
        finally:
            self.release(held)

    async def load(self, model_id: str) -> None:
        """Make a model resident (admin); returns once it is ready."""
        async with self.lease(model_id):
            pass

    async def unload(self, model_id: str) -> None:
        """Evict a model (admin) once its leases drain; no-op if it is not resident."""
        slot = self._slot(model_id)
        await self._swaps_done()
        if slot.state in ("ready", "serving", "parked") and not slot.draining:
            slot.draining = True
            self._start(self._run_swap(None, ((slot.id, "admin"),)))
        await self._swaps_done()

    async def _swaps_done(self) -> None:
        while self._swap is not None:
            await asyncio.shield(self._swap)

    def plan_for(self, model_id: str) -> planner.Plan | planner.Infeasible:
        """What loading ``model_id`` now would evict, by the planner's rules (the preload asks)."""
        slot = self._slot(model_id)
        target = planner.Target(slot.id, slot.spec.type, slot.footprint_gb)
        return planner.plan(target, self._residents(), self.budget_gb)

    def pin(self, model_id: str, pinned: bool = True) -> None:
        """A pinned model is never chosen as an eviction victim."""
        self._slot(model_id).pinned = pinned
        log.info("model.pinned" if pinned else "model.unpinned", model=model_id)
        self.events.publish(PinChanged(model=model_id, pinned=pinned))

    def reset(self, model_id: str) -> None:
        """Forget a broken model's failures (admin): the next request tries to load it again."""
        slot = self._slot(model_id)
        slot.broken_until, slot.failures = None, 0
        log.info("model.reset", model=model_id)
        self._pump()

    def add_listener(self, listener: object) -> None:
        """Attach a python-statemachine listener to every model's lifecycle machine (metrics,
        tracing): it sees each transition, with ``machine.name`` as the model id."""
        for slot in self._slots.values():
            slot.machine.add_listener(listener)  # type: ignore[no-untyped-call]  # python-statemachine is untyped

    def status(self) -> list[ModelStatus]:
        """Every physical model as /health and the admin API show it, in config order."""
        waiting: dict[str, int] = {}
        now = self._clock()
        for w in self._queue:
            waiting[w.model] = waiting.get(w.model, 0) + 1
        return [
            ModelStatus(
                id=s.id,
                type=s.spec.type.value,
                backend=s.spec.backend,
                state=s.state,
                vram_gb=round(s.footprint_gb, 3),
                estimate_gb=s.spec.vram_gb,
                measured=s.measured,
                leases=s.leases,
                waiting=waiting.get(s.id, 0) + s.engine_waiting,
                **_sequences(s),
                pinned=s.pinned,
                loads=s.loads,
                unparks=s.unparks,
                last_error=s.last_error,
                virtual=self.registry.virtual_of(s.id),
                broken=s.broken(now),
                retry_in_s=round(s.broken_until - now, 1) if s.broken(now) and s.broken_until else None,
                abandoned_loads=s.abandoned,
                host_gb=round(s.host_gb, 3),
            )
            for s in self._slots.values()
        ]

    def residency(self, model_id: str) -> tuple[str, Any]:
        """A physical model's lifecycle state, and its engine while it is loaded — on the device
        or parked in host RAM, to read what it knows (context size), never to run it — else None."""
        slot = self._slot(model_id)
        return slot.state, slot.engine if slot.state in ("ready", "serving", "parked") else None

    @property
    def queue_depth(self) -> int:
        """Requests waiting: for a load or a swap, and (holding a lease) for the engine's turn."""
        return len(self._queue) + sum(s.engine_waiting for s in self._slots.values())

    @property
    def closing(self) -> bool:
        return self._closing

    def problems(self) -> list[str]:
        """What makes llmux degraded now, one sentence each (``/health``)."""
        return faults.problems(self.status())

    def begin_shutdown(self) -> None:
        """Refuse new leases and fail every waiter with a 503 (on SIGTERM, before uvicorn's
        grace for in-flight requests starts: a queued request is not in flight)."""
        if self._closing:
            return
        self._closing, self._closing_at = True, time.monotonic()
        self.stopping.set()
        for w in list(self._queue):
            if not w.future.done():
                w.future.set_exception(ServiceUnavailable("llmux is shutting down", code="shutting_down"))
        self._queue.clear()
        self.events.waiting((), self.queue_depth)
        self.events.close()  # event streams end: they would hold the graceful stop

    # ---- decisions (synchronous: never across an await) -------------------------------------

    def _slot(self, model_id: str) -> Slot:
        slot = self._slots.get(model_id)
        if slot is None:
            spec = self.registry.physical.get(model_id)
            if spec is not None and spec.remote:
                raise InvalidRequest(
                    f"{model_id!r} is served by a remote upstream: llmux does not load, pin or unload it"
                )
            raise ModelNotFound(f"no physical model {model_id!r}", param="model")
        return slot

    def _residents(self) -> list[planner.Resident]:
        return [
            planner.Resident(
                id=s.id,
                type=s.spec.type,
                footprint_gb=s.footprint_gb,
                busy=s.leases > 0,
                last_used=s.last_used,
                pinned=s.pinned,
                priority=self.registry.priority(s.spec.type),
            )
            for s in self._slots.values()
            if s.machine.resident
        ]

    def _pump(self) -> None:
        """Grant what can be granted, in arrival order, and start at most one swap."""
        swap_claimed = self._swap is not None or self._correct()
        self.held_until = None
        for waiter in list(self._queue):  # coalesce: all who waited for a load are served with it
            slot = self._slots[waiter.model]
            if not waiter.future.done() and slot.state in ("ready", "serving") and not slot.draining:
                self._grant(waiter, slot)
        for waiter in list(self._queue):
            if waiter.future.done():  # cancelled, or failed earlier in this very pass
                if waiter in self._queue:
                    self._queue.remove(waiter)
                continue
            slot = self._slots[waiter.model]
            if slot.state == "unloaded" and slot.broken_until is not None:
                now = self._clock()
                if now < slot.broken_until:  # fail fast: nothing is evicted for a broken model
                    self._fail_waiters(slot.id, broken_error(slot, slot.broken_until - now))
                    continue
                slot.broken_until = None  # the backoff is over: one more try
            if slot.state not in ("unloaded", "parked") or swap_claimed:
                continue  # loading, draining or evicting, or another swap goes first
            swap_claimed = True
            self._plan_swap(waiter, slot)
        self.events.waiting((w.model for w in self._queue), self.queue_depth)

    def _plan_swap(self, waiter: Waiter, slot: Slot) -> None:
        target = planner.Target(slot.id, slot.spec.type, slot.footprint_gb)
        decision = planner.plan(target, self._residents(), self.budget_gb)
        if isinstance(decision, planner.Infeasible):
            log.warning("model.refused", model=slot.id, reason=decision.message)
            self._fail_waiters(slot.id, ModelCannotFit(decision.message, param="model"))
            return
        if self._held(slot, decision.evict):
            return
        for victim in decision.evict:
            self._slots[victim].draining = True
        self._start(self._run_swap(slot, tuple((v, decision.reason[v]) for v in decision.evict)))

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        self._swap = asyncio.get_running_loop().create_task(coro)
        self.swaps += 1

    def _take(self, slot: Slot) -> None:
        """Count one more lease on a resident model (the lifecycle moves it to ``serving``)."""
        slot.machine.send("acquire")
        slot.idle.clear()
        slot.last_used = self._clock()

    def _grant(self, waiter: Waiter, slot: Slot) -> None:
        self._queue.remove(waiter)
        self._take(slot)
        waiter.granted = True
        waiter.future.set_result(None)
        waited = self._clock() - waiter.since
        if waited > 0.001:
            log.info("lease.granted", model=slot.id, waited_s=round(waited, 3))

    def _release(self, slot: Slot) -> None:
        slot.machine.send("release")
        slot.last_used = self._clock()
        if slot.leases == 0:
            slot.idle.set()
            self._note_peak(slot)
        self._pump()

    def _fail_waiters(self, model_id: str, error: Exception) -> None:
        for w in list(self._queue):
            if w.model == model_id:
                self._queue.remove(w)
                if not w.future.done():
                    w.future.set_exception(error)


def _sequences(slot: Slot) -> dict[str, int]:
    """What a text engine runs itself: leases count requests, some only waiting for a slot."""
    if isinstance(slot.engine, Occupied):
        running, waiting = slot.engine.occupancy()
        return {"sequences_running": running, "sequences_waiting": waiting}
    return {}
