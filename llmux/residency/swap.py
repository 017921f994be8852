"""The swap executor: the only code that awaits loads and unloads.

One swap runs at a time (the controller starts it from a synchronous decision and records it
in ``_swap``): drain the victims chosen by the planner, unload them, load the target, then —
if the load measured more than the estimate — evict what no longer fits. When it ends, the
controller decides again (``_pump``).

Faults. An un-park that fails (the host copy, not the model) unloads that copy and loads the
model cold instead, once. A load that fails, or is still running after the model's
``load_timeout_s``, fails its waiters with a 503 and marks the model broken for a backoff; then
the swap *restores* the models it evicted for it, so a bad model never takes healthy ones down.
(Restoring, rather than checking loadability first: whether weights load is only known by
loading them — a file can be there and still be corrupt, or not fit once allocated — and on one
GPU the room has to be made first.) A timed-out load's thread cannot be stopped: it is
abandoned, and whatever it loads if it ever returns is unloaded at once. Error texts keep file
names but not the server's directories.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from llmux.protocol.errors import ModelCannotFit
from llmux.protocol.events import FootprintChanged
from llmux.registry import Registry
from llmux.residency import planner
from llmux.residency.costs import SwitchCosts
from llmux.residency.events import EventHub
from llmux.residency.faults import broken_error, redact_paths
from llmux.residency.memory import device_free_gb, measure, wait_for_room
from llmux.residency.slots import EngineFactory, Loadable, Offload, Parkable, Slot

log = structlog.get_logger("llmux.residency")

STOP_MARGIN_S = 2.0


class SwapExecutor:
    """Mixed into ``ResidencyController``; these are the state it shares with the decisions."""

    registry: Registry
    budget_gb: float
    _factory: EngineFactory
    _clock: Callable[[], float]
    _offload: Offload
    _slots: dict[str, Slot]
    _swap: asyncio.Task[None] | None
    _sleep: Callable[[float], Awaitable[None]]
    _abandoned: set[asyncio.Future[object]]
    events: EventHub
    swaps: int

    _closing_at: float | None
    costs: SwitchCosts
    _device_free_gb: Callable[[], float | None] = staticmethod(device_free_gb)

    def _pump(self) -> None:
        raise NotImplementedError

    def begin_shutdown(self) -> None:
        raise NotImplementedError

    def _residents(self) -> list[planner.Resident]:
        raise NotImplementedError

    def _fail_waiters(self, model_id: str, error: Exception) -> None:
        raise NotImplementedError

    def will_park(self, slot: Slot, reason: str) -> bool:
        raise NotImplementedError

    async def _park(self, slot: Slot, engine: Any, keep: str | None) -> bool:
        raise NotImplementedError

    async def _drop(self, slot: Slot, reason: str) -> None:
        raise NotImplementedError

    @property
    def used_gb(self) -> float:
        return planner.used_gb(self._residents())

    async def shutdown(self, grace_s: float = 30.0) -> None:
        """Refuse new leases, let held ones finish, unload what is idle — all within ``grace_s``
        of ``begin_shutdown``: a load or a request that never ends cannot hold the exit."""
        self.begin_shutdown()
        assert self._closing_at is not None
        deadline = self._closing_at + grace_s

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        if self._swap is not None:
            await asyncio.wait({self._swap}, timeout=left())
        busy = [asyncio.ensure_future(s.idle.wait()) for s in self._slots.values() if s.leases]
        if busy:
            # Past the grace uvicorn has cancelled the requests; their threads stop at the next
            # step (a token), so a short margin lets the models be unloaded, never under them.
            await asyncio.wait(busy, timeout=max(left(), STOP_MARGIN_S))
            for b in busy:
                b.cancel()
        for slot in self._slots.values():
            if slot.state in ("ready", "parked"):
                try:
                    await asyncio.wait_for(self._evict(slot, "shutdown"), timeout=max(left(), 1.0))
                except TimeoutError:
                    log.error("model.unload_timed_out", model=slot.id)

    async def _run_swap(self, target: Slot | None, victims: tuple[tuple[str, str], ...]) -> None:
        evicted: list[Slot] = []
        self.events.swap_started(self.swaps, target.id if target else None, victims, self._clock())
        try:
            for victim_id, reason in victims:
                victim = self._slots[victim_id]
                drain_started = self._clock()
                await victim.idle.wait()
                self.costs.observe(victim_id, "drain", self._clock() - drain_started)
                await self._evict(victim, reason, for_=target.id if target else None)
                evicted.append(victim)
            if target is not None:
                await self._room_for(target)
            if target is not None and not await self._load(target):
                await self._restore(evicted, target)
        except GeneratorExit:  # the event loop is being torn down: decide nothing more
            self._swap = None
            raise
        finally:
            if self._swap is not None:
                self._swap = None
                self._swap_finished(target)
                self._pump()

    def _swap_finished(self, target: Slot | None) -> None:
        if target is None:
            self.events.swap_finished("unloaded", self._clock())
        elif target.state in ("ready", "serving"):
            self.events.swap_finished("loaded", self._clock())
        else:  # the load failed or timed out, or it measured more than the budget
            self.events.swap_finished("failed", self._clock(), target.last_error)

    async def _evict(self, slot: Slot, reason: str, for_: str | None = None) -> None:
        if slot.state == "parked":  # off the device already: evicting it frees its host RAM
            slot.draining = False
            await self._drop(slot, reason)
            return
        park = self.will_park(slot, reason)
        slot.machine.send("evict")
        started = self._clock()
        engine, slot.engine = slot.engine, None
        parked = False
        try:
            if engine is not None and park:
                parked = await self._park(slot, engine, keep=for_)
            if engine is not None and not parked:
                await self._offload(engine.unload)
        except Exception as exc:  # the weights are dropped either way; say so loudly
            log.error("model.unload_failed", model=slot.id, error=repr(exc))
        finally:
            if parked:
                slot.engine = engine
            slot.machine.send("park" if parked else "evicted")
            slot.draining = False
        if engine is not None and not parked:
            self.costs.observe(slot.id, "unload", self._clock() - started)
        log.info(
            "model.parked" if parked else "model.evicted",
            model=slot.id,
            freed_gb=round(slot.footprint_gb, 3),
            host_gb=round(slot.host_gb, 3),
            reason=reason,
            for_=for_,
            duration_s=round(self._clock() - started, 3),
        )

    async def _room_for(self, slot: Slot) -> None:
        """Before a load: wait (bounded) for the device to show the footprint plus headroom free;
        if it never does, say so and load anyway — a load that runs out fails like any other."""
        need = slot.footprint_gb + self.registry.limits.vram_headroom_gb
        free = await wait_for_room(need, self._device_free_gb, self._sleep)
        if free is not None and free < need:
            log.warning("model.device_memory_short", model=slot.id, free_gb=round(free, 3), need_gb=round(need, 3))

    async def _load(self, slot: Slot) -> bool:
        """Load ``slot`` (or un-park it); True when it ended resident, False when it failed
        (waiters told)."""
        warm = slot.state == "parked"
        slot.machine.send("unpark" if warm else "load")
        started = self._clock()
        log.info("model.loading", model=slot.id, backend=slot.spec.backend, estimate_gb=slot.footprint_gb, warm=warm)
        engine: Loadable | None = None
        try:
            # In the worker thread: the first engine of a runtime imports it (torch and
            # transformers take seconds), which on the event loop would stall every request.
            engine = slot.engine or await self._offload(self._factory, slot.spec, self.registry)
            reported, probed = await self._bounded_load(slot, engine, warm)
        except Exception as exc:
            timed_out = isinstance(exc, TimeoutError)
            slot.engine, slot.host_gb = None, 0.0
            if warm and engine is not None and not timed_out:  # still holds host RAM (a timed-out
                await self._offload_quietly(slot, engine.unload)  # one is unloaded when it returns)
            if warm and not timed_out:  # the host copy failed, not the model: one cold load
                slot.machine.send("load_failed")
                log.warning("model.unpark_failed", model=slot.id, error=repr(exc))
                return await self._load(slot)
            slot.failures += 1
            backoff = slot.spec.load_backoff_s * 2 ** min(slot.failures - 1, 4)
            slot.broken_until = self._clock() + backoff
            slot.last_error = (
                f"the load did not finish within {slot.spec.load_timeout_s:g} s"
                if timed_out
                else redact_paths(f"{type(exc).__name__}: {exc}")
            )
            slot.machine.send("load_failed")  # after last_error: the event stream tells why
            log.error(
                "model.load_failed",
                model=slot.id,
                error=repr(exc),  # the full text, paths included, stays in the server log
                timed_out=timed_out,
                retry_in_s=backoff,
                duration_s=round(self._clock() - started, 3),
            )
            self._fail_waiters(slot.id, broken_error(slot, backoff))
            return False
        slot.engine, slot.host_gb = engine, 0.0
        slot.machine.send("loaded")
        slot.ready_since = self._clock()
        self.costs.observe(slot.id, "unpark" if warm else "load", slot.ready_since - started)
        if warm:
            slot.unparks += 1
        else:
            slot.loads += 1
        slot.last_error, slot.failures, slot.broken_until = None, 0, None
        footprint = reported if reported is not None else probed
        if footprint is not None and footprint > 0:  # a peak seen while serving is never lowered
            slot.footprint_gb, slot.measured = max(footprint, slot.peak_gb), True
            self.events.publish(
                FootprintChanged(
                    model=slot.id,
                    vram_gb=round(slot.footprint_gb, 3),
                    estimate_gb=slot.spec.vram_gb,
                    used_gb=round(self.used_gb, 3),
                )
            )
        log.info(
            "model.loaded",
            model=slot.id,
            footprint_gb=round(slot.footprint_gb, 3),
            measured=slot.measured,
            estimate_gb=slot.spec.vram_gb,
            duration_s=round(self._clock() - started, 3),
            used_gb=round(self.used_gb, 3),
        )
        return await self._fit_after_measurement(slot)

    async def _offload_quietly(self, slot: Slot, call: Callable[[], object]) -> None:
        try:
            await self._offload(call)
        except Exception as exc:
            log.error("model.unload_failed", model=slot.id, error=repr(exc))

    async def _bounded_load(self, slot: Slot, engine: Loadable, warm: bool) -> tuple[float | None, float | None]:
        """The load (``unpark`` when ``warm``), or ``TimeoutError`` after ``load_timeout_s`` with
        its thread abandoned."""
        load = engine.unpark if warm and isinstance(engine, Parkable) else engine.load
        work: asyncio.Future[Any] = asyncio.ensure_future(self._offload(measure, load))
        timer: asyncio.Future[Any] = asyncio.ensure_future(self._sleep(slot.spec.load_timeout_s))
        try:
            await asyncio.wait((work, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not work.done():
                self._abandon(slot, engine, work, warm)
        if not work.done():
            raise TimeoutError
        reported, probed = work.result()
        return reported, probed

    def _abandon(self, slot: Slot, engine: Loadable, work: asyncio.Future[Any], warm: bool = False) -> None:
        slot.abandoned += 1
        self._abandoned.add(work)

        def returned(done: asyncio.Future[Any]) -> None:
            slot.abandoned -= 1
            self._abandoned.discard(work)
            # A failed load leaves nothing; a failed un-park still holds the host copy.
            if not done.cancelled() and (done.exception() is None or warm):
                log.warning("model.late_load_discarded", model=slot.id)
                unload = asyncio.ensure_future(self._offload(engine.unload))
                self._abandoned.add(unload)
                unload.add_done_callback(self._abandoned.discard)

        work.add_done_callback(returned)

    async def _restore(self, evicted: list[Slot], failed: Slot) -> None:
        """Load back what was evicted for a load that failed, while it fits without evicting."""
        for slot in evicted:
            if slot.state not in ("unloaded", "parked") or slot.broken(self._clock()):
                continue
            target = planner.Target(slot.id, slot.spec.type, slot.footprint_gb)
            decision = planner.plan(target, self._residents(), self.budget_gb)
            if isinstance(decision, planner.Infeasible) or decision.evict:
                continue
            log.info("model.restoring", model=slot.id, after_failed=failed.id)
            await self._load(slot)

    async def _fit_after_measurement(self, slot: Slot) -> bool:
        """A load that measured larger than estimated may push usage over the budget: evict
        lower-priority models (rule 5 order) until it fits, or give the load back."""
        decision = planner.overflow(self._residents(), self.budget_gb, keep=slot.id)
        if isinstance(decision, planner.Infeasible) or slot.footprint_gb > self.budget_gb:
            message = (
                f"model {slot.id!r} measured {slot.footprint_gb:g} GB, more than fits in the "
                f"{self.budget_gb:g} GB VRAM budget"
            )
            self._fail_waiters(slot.id, ModelCannotFit(message, param="model"))
            await self._evict(slot, "over_budget")
            return False
        for victim_id in decision:
            self._slots[victim_id].draining = True
        for victim_id in decision:
            victim = self._slots[victim_id]
            await victim.idle.wait()
            await self._evict(victim, "over_budget", for_=slot.id)
        return True
