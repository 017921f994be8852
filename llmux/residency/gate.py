"""The controller's hook into the switch policy: ask ``switch.decide`` before a swap starts,
and when it says "not yet", arm a timer that makes the controller decide again then."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from llmux.residency import switch
from llmux.residency.costs import SwitchCosts
from llmux.residency.slots import Slot, Waiter


class Cancellable(Protocol):
    def cancel(self) -> None: ...


Timer = Callable[[float, Callable[[], None]], Cancellable]
"""Calls back after a delay: the loop's ``call_later``; tests pass one on their fake clock."""


def call_later(delay: float, callback: Callable[[], None]) -> Cancellable:
    return asyncio.get_running_loop().call_later(delay, callback)


class SwitchGate:
    """Mixed into ``ResidencyController``; the state it reads."""

    _clock: Callable[[], float]
    _queue: list[Waiter]
    _slots: dict[str, Slot]
    _timer: Timer
    _hold: Cancellable | None
    held_until: float | None
    max_wait_s: float
    costs: SwitchCosts

    def _pump(self) -> None:
        raise NotImplementedError

    def will_park(self, slot: Slot, reason: str) -> bool:
        raise NotImplementedError

    def _init_gate(self, timer: Timer, max_wait_s: float) -> None:
        self._timer, self._hold, self.max_wait_s = timer, None, max_wait_s
        self.held_until = None
        """While the switch policy holds the next swap: when it decides again."""
        self.costs = SwitchCosts()

    def _held(self, slot: Slot, evict: tuple[str, ...]) -> bool:
        """Ask the switch policy about the swap to ``slot``; on "not yet", decide again then."""
        now, wanted = self._clock(), {w.model for w in self._queue}
        victims = [
            switch.Victim(s.id, s.ready_since, s.leases > 0 or s.id in wanted, s.last_used)
            for s in (self._slots[v] for v in evict)
        ]
        oldest = min(w.since for w in self._queue if w.model == slot.id)
        parking = frozenset(v for v in evict if self.will_park(self._slots[v], "make_room"))
        cost = self.costs.switch_s(slot.id, evict, warm=slot.state == "parked", parking=parking)
        pending = switch.Pending(slot.id, oldest, cost)
        verdict = switch.decide(now, pending, victims, self.max_wait_s)
        if isinstance(verdict, switch.Start):
            return False
        if self._hold is not None:
            self._hold.cancel()
        self.held_until = verdict.until
        self._hold = self._timer(max(verdict.until - now, 0.0), self._pump)
        return True
