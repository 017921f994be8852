"""What llmux tells about residency: one shape per physical model, for ``/health`` and the
admin API alike.

Names say which model they mean: ``id`` is a *physical* model (one set of weights in VRAM);
``virtual`` lists the names clients send as ``model`` that map onto it.
"""

from __future__ import annotations

import msgspec


class ModelStatus(msgspec.Struct, kw_only=True):
    id: str
    """The physical model id (a key under ``physical:`` in models.yaml)."""
    type: str
    backend: str
    state: str
    """Its lifecycle state: unloaded, loading, ready, serving, evicting, parked (warm in host
    RAM, no VRAM) or unparking (being copied back)."""
    vram_gb: float
    """Measured footprint after the first load, else the estimate."""
    estimate_gb: float
    measured: bool
    leases: int
    """Requests running on it now."""
    waiting: int
    """Requests queued for it (for a lease: the model is loading or draining)."""
    sequences_running: int = 0
    """Text models: sequences generating now (at most ``max_parallel``)."""
    sequences_waiting: int = 0
    """Text models: leased requests waiting inside the engine for a slot (counted in ``leases``)."""
    pinned: bool
    loads: int
    last_error: str | None
    """Why its last load failed (file names, never the server's directories)."""
    virtual: list[str]
    broken: bool = False
    """A load failed or timed out: refused (503) until ``retry_in_s`` passes or an admin reset."""
    retry_in_s: float | None = None
    abandoned_loads: int = 0
    """Timed-out load threads still running (they unload whatever they load)."""
    unparks: int = 0
    """Times it came back from host RAM (``loads`` counts only loads from disk)."""
    host_gb: float = 0.0
    """Host RAM it holds while parked (the warm tier) or being un-parked; 0 in other states."""


class VramInfo(msgspec.Struct):
    budget_gb: float
    used_gb: float
    free_gb: float


class UpstreamStatus(msgspec.Struct, kw_only=True):
    """A remote ``openai`` physical model: where it is and what its health poll last saw."""

    id: str
    """The physical model id."""
    type: str
    url: str
    """The upstream's API root (``options.base_url``); the key is never shown."""
    model: str
    """The upstream's name for the model."""
    state: str
    """``up``, ``down`` (requests get a 503 at once) or ``unknown`` (not polled yet)."""
    last_error: str | None
    checked_at: float | None
    """Unix time of the last poll."""
    virtual: list[str]
    in_flight: int = 0
    """Requests being relayed to it now (waiting for its answer, or reading it)."""


class Upstreams(msgspec.Struct, kw_only=True):
    """``GET /v1/admin/upstreams``: every remote upstream, as its health poll and relays see it now."""

    upstreams: list[UpstreamStatus]


class HostRamInfo(msgspec.Struct, kw_only=True):
    """The warm tier (``host_ram_budget_gb``): what the parked models hold."""

    budget_gb: float
    used_gb: float
    free_gb: float
    parked: list[str]
    """The parked physical models."""


class Health(msgspec.Struct, kw_only=True):
    status: str
    """``ok``; ``degraded`` (serving, but see ``reasons``); ``shutting_down`` (with a 503)."""
    loaded: list[ModelStatus]
    """The models that are not ``unloaded`` (parked ones included, with their state)."""
    vram: VramInfo
    queue_depth: int
    """Requests waiting: for a model to load or drain, and for their turn on a busy engine."""
    uptime_s: float
    reasons: list[str] = []
    """Why the status is not ``ok``: a broken model, a failed load, abandoned load threads."""
    upstreams: list[UpstreamStatus] = []
    """Remote ``openai`` models (they hold no VRAM here, so they are not in ``loaded``)."""
    host_ram: HostRamInfo | None = None
    """The warm tier; absent when ``host_ram_budget_gb`` is 0."""


class Readiness(msgspec.Struct):
    ready: bool
    reason: str | None = None


class Residency(msgspec.Struct, kw_only=True):
    """``GET /v1/admin/models``: every physical model, loaded or not."""

    budget_gb: float
    used_gb: float
    queue_depth: int
    swaps: int
    models: list[ModelStatus]
    host_ram: HostRamInfo | None = None
    """The warm tier; absent when ``host_ram_budget_gb`` is 0."""
