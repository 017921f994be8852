"""The controller's value types: one ``Slot`` per physical model, a ``Waiter`` per queued
request, the ``Lease`` a request holds, and the seam to the runtimes (``Loadable``).

Only the controller mutates these; everyone else sees ``ModelStatus`` (``protocol.residency``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from llmux.registry import PhysicalModel, Registry
from llmux.residency.lifecycle import ModelLifecycle


class Loadable(Protocol):
    """What residency needs of a runtime: weights in, weights out (both blocking)."""

    def load(self) -> float | None:
        """Bring the weights into memory. Returns the measured footprint in GB, or None when
        it cannot be measured (CPU); raises on failure, leaving nothing allocated."""
        ...

    def unload(self) -> None:
        """Free everything ``load`` allocated."""
        ...


@runtime_checkable
class Parkable(Protocol):
    """A runtime that can leave the device and stay loaded in host RAM (the warm tier)."""

    def park(self) -> float | None:
        """Move the weights off the device into host memory, keeping them loaded (blocking).
        Returns the host RAM it now holds in GB (0 when it cannot tell: its footprint counts),
        or None when it cannot park (nothing changed; the controller unloads it); raising
        also means "unload me"."""
        ...

    def unpark(self) -> float | None:
        """Back onto the device, ready to serve: what ``load`` does, from host memory instead
        of disk. Returns the measured footprint like ``load``; on failure ``unload`` follows."""
        ...


@runtime_checkable
class PeakAware(Protocol):
    """A runtime that measures the device memory it has needed at most while serving."""

    def peak_gb(self) -> float | None:
        """The largest device footprint seen since ``load`` (weights plus the KV cache and
        activations of its biggest request), in GB; None when it cannot measure (no CUDA)."""
        ...


@runtime_checkable
class Occupied(Protocol):
    """A runtime that runs many requests' sequences itself (text engines) and says how many."""

    def occupancy(self) -> tuple[int, int]:
        """(sequences generating now, sequences waiting inside the engine for a slot)."""
        ...


EngineFactory = Callable[[PhysicalModel, Registry], Loadable]
Offload = Callable[..., Awaitable[Any]]
"""Runs a blocking call off the event loop (building an engine, which may import its runtime;
its measured load or un-park; unload; park): a daemon thread in production; tests pass one that
waits on a gate they control, so load times are decided by the test, not a clock."""


@dataclass(eq=False)
class Slot:
    spec: PhysicalModel
    machine: ModelLifecycle
    footprint_gb: float
    measured: bool = False
    draining: bool = False
    pinned: bool = False
    last_used: float = 0.0
    ready_since: float = 0.0
    """When its last load finished: the start of its serving window (``switch.py``)."""
    engine: Any = None
    """The loaded runtime (a ``Loadable``, and whatever inference protocol its type has)."""
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    loads: int = 0
    unparks: int = 0
    """Un-parks that succeeded (counted apart from ``loads``: no disk read, no initialisation)."""
    last_error: str | None = None
    broken_until: float | None = None
    """Set after a failed or timed-out load: refused until then (or an admin reset)."""
    failures: int = 0
    """Failed loads since the last success (the backoff doubles with each)."""
    abandoned: int = 0
    """Timed-out load threads that have not returned yet."""
    host_gb: float = 0.0
    peak_gb: float = 0.0
    """The largest footprint seen while it served (``residency.peak``); 0 until one is."""
    """Host RAM it holds while ``parked`` (as its runtime reported it); 0 otherwise."""

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def state(self) -> str:
        return str(self.machine.state)

    def broken(self, now: float) -> bool:
        return self.broken_until is not None and now < self.broken_until

    @property
    def engine_waiting(self) -> int:
        """Jobs its engine has queued for their turn or a slot (``Occupied`` engines say how many)."""
        return self.engine.occupancy()[1] if isinstance(self.engine, Occupied) else 0

    @property
    def leases(self) -> int:
        return int(self.machine.leases)


@dataclass(eq=False)
class Waiter:
    model: str
    """The physical model id it waits for."""
    future: asyncio.Future[None]
    since: float
    granted: bool = False


@dataclass(frozen=True, slots=True)
class Lease:
    """Permission to run inference on ``engine``; while held, the model cannot be evicted."""

    model: str
    """The physical model id."""
    engine: Any
