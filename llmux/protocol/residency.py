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
    """Its lifecycle state: unloaded, loading, ready, serving or evicting."""
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
    virtual: list[str]


class VramInfo(msgspec.Struct):
    budget_gb: float
    used_gb: float
    free_gb: float


class Health(msgspec.Struct):
    status: str
    loaded: list[ModelStatus]
    """The models that are not ``unloaded``."""
    vram: VramInfo
    queue_depth: int
    uptime_s: float


class Residency(msgspec.Struct, kw_only=True):
    """``GET /v1/admin/models``: every physical model, loaded or not."""

    budget_gb: float
    used_gb: float
    queue_depth: int
    swaps: int
    models: list[ModelStatus]
