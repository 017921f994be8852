"""The swap executor: the only code that awaits loads and unloads.

One swap runs at a time (the controller starts it from a synchronous decision and records it
in ``_swap``): drain the victims chosen by the planner, unload them, load the target, then —
if the load measured more than the estimate — evict what no longer fits. When it ends, the
controller decides again (``_pump``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from llmux.protocol.errors import ModelCannotFit, ModelLoadFailed
from llmux.registry import Registry
from llmux.residency import planner
from llmux.residency.memory import measure
from llmux.residency.slots import EngineFactory, Offload, Slot

log = structlog.get_logger("llmux.residency")


class SwapExecutor:
    """Mixed into ``ResidencyController``; these are the state it shares with the decisions."""

    registry: Registry
    budget_gb: float
    _factory: EngineFactory
    _clock: Callable[[], float]
    _offload: Offload
    _slots: dict[str, Slot]
    _swap: asyncio.Task[None] | None

    def _pump(self) -> None:
        raise NotImplementedError

    def _residents(self) -> list[planner.Resident]:
        raise NotImplementedError

    def _fail_waiters(self, model_id: str, error: Exception) -> None:
        raise NotImplementedError

    @property
    def used_gb(self) -> float:
        return planner.used_gb(self._residents())

    async def _run_swap(self, target: Slot | None, victims: tuple[tuple[str, str], ...]) -> None:
        try:
            for victim_id, reason in victims:
                victim = self._slots[victim_id]
                await victim.idle.wait()
                await self._evict(victim, reason, for_=target.id if target else None)
            if target is not None:
                await self._load(target)
        except GeneratorExit:  # the event loop is being torn down: decide nothing more
            self._swap = None
            raise
        finally:
            if self._swap is not None:
                self._swap = None
                self._pump()

    async def _evict(self, slot: Slot, reason: str, for_: str | None = None) -> None:
        slot.machine.send("evict")
        started = self._clock()
        engine, slot.engine = slot.engine, None
        try:
            if engine is not None:
                await self._offload(engine.unload)
        except Exception as exc:  # the weights are dropped either way; say so loudly
            log.error("model.unload_failed", model=slot.id, error=repr(exc))
        finally:
            slot.machine.send("evicted")
            slot.draining = False
        log.info(
            "model.evicted",
            model=slot.id,
            freed_gb=round(slot.footprint_gb, 3),
            reason=reason,
            for_=for_,
            duration_s=round(self._clock() - started, 3),
        )

    async def _load(self, slot: Slot) -> None:
        slot.machine.send("load")
        started = self._clock()
        log.info("model.loading", model=slot.id, backend=slot.spec.backend, estimate_gb=slot.footprint_gb)
        try:
            engine = slot.engine or self._factory(slot.spec, self.registry)
            reported, probed = await self._offload(measure, engine.load)
        except Exception as exc:
            slot.machine.send("load_failed")
            slot.last_error = f"{type(exc).__name__}: {exc}"
            log.error(
                "model.load_failed", model=slot.id, error=slot.last_error, duration_s=round(self._clock() - started, 3)
            )
            self._fail_waiters(slot.id, ModelLoadFailed(f"loading model {slot.id!r} failed: {slot.last_error}"))
            return
        slot.engine = engine
        slot.machine.send("loaded")
        slot.loads += 1
        slot.last_error = None
        footprint = reported if reported is not None else probed
        if footprint is not None and footprint > 0:
            slot.footprint_gb, slot.measured = footprint, True
        log.info(
            "model.loaded",
            model=slot.id,
            footprint_gb=round(slot.footprint_gb, 3),
            measured=slot.measured,
            estimate_gb=slot.spec.vram_gb,
            duration_s=round(self._clock() - started, 3),
            used_gb=round(self.used_gb, 3),
        )
        await self._fit_after_measurement(slot)

    async def _fit_after_measurement(self, slot: Slot) -> None:
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
            return
        for victim_id in decision:
            self._slots[victim_id].draining = True
        for victim_id in decision:
            victim = self._slots[victim_id]
            await victim.idle.wait()
            await self._evict(victim, "over_budget", for_=slot.id)
