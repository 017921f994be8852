"""The residency event stream, ``GET /v1/admin/events`` (SSE): one Struct per event kind.

Each SSE message is ``event: <type>`` plus ``data: {json}``; the JSON carries the same ``type``
tag, so a reader that ignores SSE event names decodes the union with ``msgspec`` alone. Every
event has ``seq``, the hub's counter: a ``snapshot`` says which ``seq`` it already includes, and a
gap between two consecutive ``seq`` values a client receives is impossible except across a
``snapshot`` with ``resync: true`` (the hub dropped events for a subscriber that fell behind and
sends the whole state instead).

Model states are the lifecycle's (``unloaded``, ``loading``, ``ready``, ``serving``, ``evicting``
= unloading, ``parked`` = warm in host RAM, ``unparking``); a failed load is ``state_changed`` with ``event: "load_failed"`` and its ``error``;
draining is announced by ``swap_started`` (its ``victims``).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from llmux.protocol.residency import ModelStatus


class Event(msgspec.Struct, kw_only=True, tag_field="type"):
    seq: int = 0
    """Set by the hub when published."""
    at: float = 0.0
    """Unix time of publication."""


class Victim(msgspec.Struct):
    model: str
    reason: str
    """``replace`` (one LLM/TTS at a time), ``make_room``, ``admin``, ``over_budget``."""


class SwapRecord(msgspec.Struct, kw_only=True):
    """A finished swap, as ``swap_finished`` tells it and the snapshot's ``recent_swaps`` keep it."""

    swap: int
    target: str | None
    """The model loaded, or None for an admin unload."""
    victims: list[Victim]
    outcome: Literal["running", "loaded", "failed", "unloaded"]
    """``running`` only in a snapshot's ``swapping``."""
    duration_s: float
    error: str | None = None
    at: float = 0.0


class Loading(msgspec.Struct, kw_only=True):
    since: float
    """Unix time the load started."""
    expected_s: float | None
    """Its measured average load time, if it has loaded before (runtimes report no fraction)."""


class Snapshot(Event, tag="snapshot"):
    """The whole state: first on every connection, and after events were dropped (``resync``)."""

    budget_gb: float
    used_gb: float
    queue_depth: int
    swaps: int
    models: list[ModelStatus]
    recent_swaps: list[SwapRecord]
    """The last few finished swaps, oldest first."""
    host_budget_gb: float = 0.0
    """The warm tier's host RAM budget (0: models are never parked)."""
    loading: dict[str, Loading] = {}
    """Models loading now."""
    swapping: SwapRecord | None = None
    """The swap running now (``outcome``/``duration_s`` not final yet), if any."""
    resync: bool = False


class StateChanged(Event, tag="state_changed"):
    model: str
    state: str
    previous: str
    event: str
    """The lifecycle transition: load, loaded, load_failed, evict, evicted, acquire, release."""
    used_gb: float
    """VRAM the resident models hold after the change."""
    error: str | None = None
    """Why a load failed (``event: load_failed``)."""
    expected_s: float | None = None
    """``event: load`` / ``unpark``: the model's measured average time for it, if it has done it
    before — the only progress llmux can tell (runtimes report no fraction while loading)."""
    host_gb: float = 0.0
    """Host RAM the model holds after the change (the warm tier: parked or unparking)."""


class LeaseChanged(Event, tag="lease"):
    model: str
    leases: int
    """Requests running on it after the change."""
    acquired: bool
    """True for a lease taken, False for one given back."""


class WaitingChanged(Event, tag="waiting"):
    model: str
    waiting: int
    """Requests queued for a lease on it (its load, or a swap that makes room)."""
    queue_depth: int


class SwapStarted(Event, tag="swap_started"):
    swap: int
    target: str | None
    victims: list[Victim]
    """Drained (no new leases), then unloaded, before the target loads."""


class SwapFinished(Event, tag="swap_finished"):
    record: SwapRecord


class FootprintChanged(Event, tag="footprint"):
    """A load measured the model's real footprint; it replaces the estimate from now on."""

    model: str
    vram_gb: float
    estimate_gb: float
    used_gb: float


class PinChanged(Event, tag="pinned"):
    model: str
    pinned: bool


ResidencyEvent = (
    Snapshot | StateChanged | LeaseChanged | WaitingChanged | SwapStarted | SwapFinished | FootprintChanged | PinChanged
)
