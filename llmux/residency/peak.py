"""A model's footprint is the peak it needs while serving, not only what its load took.

The load measures weights plus what the runtime allocates up front; serving adds the KV cache
and activations of each request (``engines.torch_park.PeakMeter`` measures them on CUDA; on a
CPU nothing is attributable to one model, see there). After a model's last lease is released
the controller asks its engine (``slots.PeakAware``); a peak above the planned footprint
replaces it, and is kept across reloads (a reload's own measurement never lowers it). When the
grown footprint pushes usage over the budget, the same correction as after a load runs as a
swap: lower-priority models are drained and evicted (rule 5 order, never pinned ones), or — if
nothing else can make room — the grown model itself, once idle.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from llmux.protocol.events import FootprintChanged
from llmux.residency import planner
from llmux.residency.events import EventHub
from llmux.residency.slots import PeakAware, Slot

log = structlog.get_logger("llmux.residency")

GROWTH_GB = 0.01
"""Smaller changes are measurement noise, not a new peak."""


class PeakFootprint:
    """Mixed into ``ResidencyController``; the state it shares."""

    _slots: dict[str, Slot]
    _swap: Any
    budget_gb: float
    _grown: str | None = None
    events: EventHub
    # Annotations only (no stubs): the controller and the swap executor define these, and a
    # stub here would come first in the method resolution order.
    _residents: Callable[[], list[planner.Resident]]
    _start: Callable[[Coroutine[Any, Any, None]], None]
    _run_swap: Callable[[Slot | None, tuple[tuple[str, str], ...]], Coroutine[Any, Any, None]]

    def _note_peak(self, slot: Slot) -> None:
        """After ``slot``'s last lease: adopt its engine's peak when it grew."""
        peak = slot.engine.peak_gb() if isinstance(slot.engine, PeakAware) else None
        if peak is None or peak <= slot.footprint_gb + GROWTH_GB:
            return
        log.info("model.footprint_grew", model=slot.id, was_gb=round(slot.footprint_gb, 3), peak_gb=round(peak, 3))
        slot.footprint_gb = slot.peak_gb = peak
        slot.measured = True
        self._grown = slot.id
        used = planner.used_gb(self._residents())
        self.events.publish(
            FootprintChanged(
                model=slot.id, vram_gb=round(peak, 3), estimate_gb=slot.spec.vram_gb, used_gb=round(used, 3)
            )
        )

    def _correct(self) -> bool:
        """If a grown footprint left usage over the budget, start the swap that fixes it."""
        residents = self._residents()
        if self._swap is not None or planner.used_gb(residents) <= self.budget_gb + 1e-9:
            return False
        # The model that grew keeps its place, unless it has left since (an admin unload, a swap):
        # then the largest resident does. Never a model that is no longer resident.
        grown = next((r.id for r in residents if r.id == self._grown), None)
        keep = grown if grown is not None else max(residents, key=lambda r: r.footprint_gb).id
        victims = planner.overflow(residents, self.budget_gb, keep=keep)
        if isinstance(victims, planner.Infeasible):
            log.warning("model.peak_over_budget", model=keep, budget_gb=self.budget_gb)
            victims = (keep,)
        for victim in victims:
            self._slots[victim].draining = True
        self._start(self._run_swap(None, tuple((v, "over_budget") for v in victims)))
        return True
