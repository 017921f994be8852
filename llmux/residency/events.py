"""The residency event hub: what the controller decides, told to whoever subscribes.

``publish`` is synchronous and never awaits: the controller calls it from its decisions (and
its lifecycle listener), which must stay synchronous. Each subscriber has a bounded queue; one
that falls behind (its queue full) loses the queued events and gets a fresh ``snapshot`` with
``resync: true`` on its next read instead — a slow dashboard costs the controller one
``len()`` check per event, never a wait. A subscriber that stops reading altogether is ended by
the HTTP layer (``limits.stall_timeout_s``), which unsubscribes it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog

from llmux.protocol.events import (
    Event,
    LeaseChanged,
    Loading,
    Snapshot,
    StateChanged,
    SwapFinished,
    SwapRecord,
    SwapStarted,
    Victim,
    WaitingChanged,
)
from llmux.protocol.residency import ModelStatus

log = structlog.get_logger("llmux.residency")

QUEUE_EVENTS = 256
MAX_SUBSCRIBERS = 64
"""Event streams open at once; more is a 429 (each holds a queue of up to ``QUEUE_EVENTS``)."""
RECENT_SWAPS = 20


class View(Protocol):
    """What a snapshot reads (the controller)."""

    budget_gb: float
    host_budget_gb: float
    swaps: int

    @property
    def used_gb(self) -> float: ...

    @property
    def queue_depth(self) -> int: ...

    def status(self) -> list[ModelStatus]: ...


class Subscription:
    """One reader's bounded queue; ``next`` returns a snapshot first, then events in order."""

    def __init__(self, hub: EventHub, maxsize: int) -> None:
        self._hub, self._maxsize = hub, maxsize
        self._queue: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._snapshot_due, self._resync = True, False
        self.dropped = 0
        """Events lost because this reader fell behind (each time replaced by a snapshot)."""

    def offer(self, event: Event) -> None:
        if len(self._queue) >= self._maxsize:
            self.dropped += len(self._queue) + 1
            self._queue.clear()
            self._snapshot_due = self._resync = True
        else:
            self._queue.append(event)
        self._wake.set()

    @property
    def closed(self) -> bool:
        """The hub closed (shutting down) and nothing is left to read: the stream ends."""
        return self._hub.closed and not self._queue and not self._snapshot_due

    async def next(self, timeout_s: float) -> Event | None:
        """The next event; None when nothing happened for ``timeout_s`` (send a keep-alive), or
        once ``closed``."""
        if self.closed:
            return None
        if not self._queue and not self._snapshot_due:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout_s)
            except TimeoutError:
                return None
        if not self._queue and not self._snapshot_due:
            return None  # woken to end (``EventHub.close``)
        return self._take()

    def drain(self) -> list[Event]:
        """Everything there is to read now, without waiting."""
        taken: list[Event] = []
        while self._queue or self._snapshot_due:
            taken.append(self._take())
        return taken

    def _take(self) -> Event:
        if self._snapshot_due:
            # The snapshot includes every event queued so far: they are dropped, not repeated.
            self._queue.clear()
            snapshot = self._hub.snapshot(resync=self._resync)
            self._snapshot_due = self._resync = False
            return snapshot
        return self._queue.popleft()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._hub.subscribers.discard(self)


class EventHub:
    def __init__(self, view: View, *, maxsize: int = QUEUE_EVENTS, clock: Callable[[], float] = time.time) -> None:
        self._view, self._clock = view, clock
        self.maxsize = maxsize
        """Events one subscriber may have queued (new subscriptions); one more and it resyncs."""
        self.seq = 0
        self.subscribers: set[Subscription] = set()
        self.closed = False
        self.recent: deque[SwapRecord] = deque(maxlen=RECENT_SWAPS)
        self.current: SwapRecord | None = None
        self._swap_started = 0.0
        self._waiting: dict[str, int] = {}
        self.loading: dict[str, Loading] = {}

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self.maxsize)
        self.subscribers.add(sub)
        return sub

    def close(self) -> None:
        """End every stream once it has read what is queued (shutdown: an open stream would
        otherwise hold the server's graceful stop for its whole grace)."""
        self.closed = True
        for sub in list(self.subscribers):
            sub.wake()

    def publish(self, event: Event) -> None:
        self.seq += 1
        event.seq, event.at = self.seq, round(self._clock(), 3)
        for sub in list(self.subscribers):
            sub.offer(event)

    def snapshot(self, *, resync: bool = False) -> Snapshot:
        v = self._view
        return Snapshot(
            seq=self.seq,
            at=round(self._clock(), 3),
            budget_gb=v.budget_gb,
            used_gb=round(v.used_gb, 3),
            host_budget_gb=v.host_budget_gb,
            queue_depth=v.queue_depth,
            swaps=v.swaps,
            models=v.status(),
            recent_swaps=list(self.recent),
            loading=dict(self.loading),
            swapping=self.current,
            resync=resync,
        )

    # ---- what the controller reports --------------------------------------------------------

    def swap_started(self, swap: int, target: str | None, victims: Iterable[tuple[str, str]], now: float) -> None:
        listed = [Victim(model, reason) for model, reason in victims]
        self._swap_started = now
        self.current = SwapRecord(swap=swap, target=target, victims=listed, outcome="running", duration_s=0.0)
        self.publish(SwapStarted(swap=swap, target=target, victims=listed))

    def swap_finished(self, outcome: str, now: float, error: str | None = None) -> None:
        if self.current is None:
            return
        record = SwapRecord(
            swap=self.current.swap,
            target=self.current.target,
            victims=self.current.victims,
            outcome=outcome,  # type: ignore[arg-type]  # the controller passes one of SwapRecord's literals
            duration_s=round(now - self._swap_started, 3),
            error=error,
            at=round(self._clock(), 3),
        )
        self.current = None
        self.recent.append(record)
        self.publish(SwapFinished(record=record))

    def waiting(self, models: Iterable[str], queue_depth: int) -> None:
        """Publish each model whose count of queued requests changed since the last call."""
        counts: dict[str, int] = {}
        for model in models:
            counts[model] = counts.get(model, 0) + 1
        for model in self._waiting.keys() | counts.keys():
            if counts.get(model, 0) != self._waiting.get(model, 0):
                self.publish(WaitingChanged(model=model, waiting=counts.get(model, 0), queue_depth=queue_depth))
        self._waiting = counts


class LifecycleEvents:
    """A python-statemachine listener on every model's lifecycle: state changes and leases."""

    def __init__(
        self,
        hub: EventHub,
        used_gb: Callable[[], float],
        error_of: Callable[[str], str | None],
        expected_s: Callable[[str, str], float | None],
        host_gb: Callable[[str], float],
    ) -> None:
        self._hub, self._used_gb, self._error_of = hub, used_gb, error_of
        self._expected, self._host_gb = expected_s, host_gb

    def after_transition(self, event: Any, source: Any, target: Any, machine: Any) -> None:
        model, name = machine.name, str(event)
        try:
            if source.id != target.id:
                self._state_changed(model, name, source.id, target.id)
            if name in ("acquire", "release"):
                self._hub.publish(LeaseChanged(model=model, leases=machine.leases, acquired=name == "acquire"))
        except Exception:  # telling must never break a residency decision (the machine would raise)
            log.exception("events.publish_failed", model=model, transition=name)

    def _state_changed(self, model: str, name: str, source: str, target: str) -> None:
        expected = self._expected(model, name) if name in ("load", "unpark") else None
        if name in ("load", "unpark"):
            self._hub.loading[model] = Loading(since=round(time.time(), 3), expected_s=expected)
        else:
            self._hub.loading.pop(model, None)
        self._hub.publish(
            StateChanged(
                model=model,
                state=target,
                previous=source,
                event=name,
                used_gb=round(self._used_gb(), 3),
                error=self._error_of(model) if name == "load_failed" else None,
                expected_s=expected,
                host_gb=round(self._host_gb(model), 3),
            )
        )
