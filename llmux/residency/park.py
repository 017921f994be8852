"""The warm host-RAM tier: an evicted model is *parked* in host memory instead of unloaded, and
a later request un-parks it (a copy back to the device) instead of reading and initialising it.

``host_ram_budget_gb`` in models.yaml (0, the default, turns the tier off) bounds what parked
models hold together. Only evictions that make room for another model park (``PARK_REASONS``);
an admin unload, the shutdown and the over-budget correction free the memory. A model is parked
only when it fits in the host budget by itself; parked models are dropped (unloaded) to make
room, lowest priority first, then least recently used (planner rule 7) — never the model the
running swap is about to un-park. A parked model holds no VRAM: the planner does not see it.

What each runtime can do (``slots.Parkable``):

- transformers (LLM and ASR): ``module.to("cpu")`` keeps the loaded model (weights, tokenizer,
  processor) in host RAM, pinned where CUDA exists so the copy back runs at full PCIe speed;
  un-parking is ``module.to(device)``. On a CPU-only host the weights are in RAM already: the
  park moves nothing and the un-park only skips the disk read and initialisation.
- llama.cpp: a loaded ``Llama`` cannot move its GPU layers to the host and back. When its
  layers are on the CPU (a CPU-only build, or ``n_gpu_layers: 0``) the engine parks by keeping
  the object; with GPU layers it declines and is unloaded — its weights are mmap'd, so the
  kernel's page cache usually still holds the file and the next load reads RAM, not disk
  (``bench.unpark`` measures both).

On a CPU-only host the "VRAM" budget and the host budget are both RAM: together they are what
llmux may hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from llmux.protocol.residency import HostRamInfo
from llmux.residency import planner
from llmux.residency.costs import SwitchCosts
from llmux.residency.slots import Offload, Parkable, Slot

log = structlog.get_logger("llmux.residency")

PARK_REASONS = frozenset({"replace", "make_room"})
"""Evictions that park. ``admin``, ``shutdown`` and ``over_budget`` mean "free the memory"."""


class HostTier:
    """Mixed into ``ResidencyController``; the state it shares."""

    _slots: dict[str, Slot]
    _offload: Offload
    _clock: Callable[[], float]
    costs: SwitchCosts
    host_budget_gb: float = 0.0

    @property
    def host_used_gb(self) -> float:
        """Host RAM the parked models hold (and one being un-parked, until its copy is done)."""
        return sum(s.host_gb for s in self._slots.values())

    def host_ram(self) -> HostRamInfo | None:
        """The warm tier as ``/health`` shows it; None when it is off."""
        if self.host_budget_gb <= 0:
            return None
        used = round(self.host_used_gb, 3)
        parked = [s.id for s in self._slots.values() if s.machine.warm]
        return HostRamInfo(
            budget_gb=self.host_budget_gb, used_gb=used, free_gb=round(self.host_budget_gb - used, 3), parked=parked
        )

    def will_park(self, slot: Slot, reason: str) -> bool:
        """Whether evicting ``slot`` for ``reason`` is planned to park it (the switch policy
        prices such a victim by its park time, not its unload time)."""
        return (
            self.host_budget_gb > 0
            and reason in PARK_REASONS
            and isinstance(slot.engine, Parkable)
            and slot.footprint_gb <= self.host_budget_gb
        )

    def _parked(self) -> list[planner.Resident]:
        return [
            planner.Resident(id=s.id, type=s.spec.type, footprint_gb=s.host_gb, last_used=s.last_used)
            for s in self._slots.values()
            if s.machine.warm
        ]

    async def _park(self, slot: Slot, engine: Any, keep: str | None) -> bool:
        """While ``slot`` is ``evicting``: park it if room can be made. True when parked."""
        room = planner.host_room(slot.footprint_gb, self._parked(), self.host_budget_gb, keep)
        if isinstance(room, planner.Infeasible):
            log.info("model.not_parked", model=slot.id, reason=room.message)
            return False
        for victim in room:
            await self._drop(self._slots[victim], "host_room")
        started = self._clock()
        try:
            host = await self._offload(engine.park)
        except Exception as exc:  # half-moved weights: the caller unloads them
            log.error("model.park_failed", model=slot.id, error=repr(exc))
            return False
        if host is None:
            log.info("model.not_parked", model=slot.id, reason="its runtime cannot park")
            return False
        host = host if host > 0 else slot.footprint_gb
        # The runtime's own figure may exceed the estimate: make room again, or give up on it.
        over = planner.host_room(host, self._parked(), self.host_budget_gb, keep)
        if isinstance(over, planner.Infeasible):
            log.info("model.not_parked", model=slot.id, reason=over.message)
            return False
        for victim in over:
            await self._drop(self._slots[victim], "host_room")
        slot.host_gb = host
        self.costs.observe(slot.id, "park", self._clock() - started)
        return True

    async def _drop(self, slot: Slot, reason: str) -> None:
        """A parked model leaves host RAM: its engine is unloaded."""
        engine, slot.engine = slot.engine, None
        freed, slot.host_gb = slot.host_gb, 0.0
        slot.machine.send("drop")
        try:
            if engine is not None:
                await self._offload(engine.unload)
        except Exception as exc:
            log.error("model.unload_failed", model=slot.id, error=repr(exc))
        log.info("model.dropped", model=slot.id, freed_host_gb=round(freed, 3), reason=reason)
