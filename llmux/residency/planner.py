"""Which models to evict so that a target fits: a pure function of the resident set.

Rules (LLMUX-VRAM-002…005), numbered as at the branches below:

1. A model already resident needs nothing.
2. A model larger than the whole budget can never fit: refuse, don't try.
3. At most one LLM and one TTS: a new one replaces the resident one of its type. ASR and
   embedding models have no such cap: they are small, and two clients using different ones
   (a RAG index per application) would otherwise evict each other on every request; rule 5
   still evicts them when room is needed.
4. Load alongside when the rest fits (no eviction beyond rule 3).
5. Otherwise evict lowest priority first (by default LLM, then embedding, then TTS, then ASR:
   ``eviction_order`` in models.yaml may move embedding), only as many as needed.
   Within one priority, idle before busy, then least recently used first — so a higher-priority
   model is never evicted while a lower-priority one could go instead.
6. Pinned models are never evicted; if the target cannot fit without them, refuse.

Parked models (the warm host-RAM tier) are not resident: they hold no VRAM and are not in
``residents``. Their own budget is decided by ``host_room``:

7. A model is parked only if it fits in the host RAM budget by itself; to make room, parked
   models are dropped lowest priority first (rule 5's order), then least recently used; the
   model the current swap brings back is never dropped for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmux.registry.config import ModelType

_EPSILON = 1e-9  # budgets are decimal GB; don't refuse 16.0 because 9.1 + 6.9 rounds up


@dataclass(frozen=True, slots=True)
class Resident:
    """A model occupying (or about to occupy) VRAM."""

    id: str
    type: ModelType
    footprint_gb: float
    busy: bool = False
    """Holds leases: evicting it means waiting for them to drain."""
    last_used: float = 0.0
    pinned: bool = False
    priority: int | None = None
    """Eviction priority (lower goes first); None: its type's default order."""

    @property
    def rank(self) -> int:
        return self.type.priority if self.priority is None else self.priority


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    type: ModelType
    footprint_gb: float


@dataclass(frozen=True, slots=True)
class Plan:
    """Evict these (in order), then load the target."""

    evict: tuple[str, ...]
    reason: dict[str, str]
    """Why each victim goes: ``"replace"`` (rule 3) or ``"make_room"`` (rule 5)."""


@dataclass(frozen=True, slots=True)
class Infeasible:
    """The target cannot be loaded under this budget; ``message`` says why."""

    message: str


def used_gb(residents: Sequence[Resident]) -> float:
    return sum(r.footprint_gb for r in residents)


def plan(target: Target, residents: Sequence[Resident], budget_gb: float) -> Plan | Infeasible:
    """Decide the evictions that make room for ``target``. Pure: no I/O, no clock, no logging."""
    # 1. Already resident.
    if any(r.id == target.id for r in residents):
        return Plan(evict=(), reason={})
    # 2. Larger than the whole budget.
    if target.footprint_gb > budget_gb + _EPSILON:
        return Infeasible(
            f"model {target.id!r} needs {target.footprint_gb:g} GB but the whole VRAM budget is {budget_gb:g} GB"
        )
    victims: list[str] = []
    reason: dict[str, str] = {}
    # 3. One LLM, one TTS.
    if target.type in (ModelType.LLM, ModelType.TTS):
        for r in residents:
            if r.type is target.type:
                if r.pinned:
                    return Infeasible(f"model {r.id!r} is pinned and only one {r.type.value} model may be resident")
                victims.append(r.id)
                reason[r.id] = "replace"
    kept = [r for r in residents if r.id not in reason]
    free = budget_gb - used_gb(kept)
    # 4. Fits alongside.
    if target.footprint_gb <= free + _EPSILON:
        return Plan(evict=tuple(victims), reason=reason)
    # 5. Lowest priority first; idle before busy; least recently used first.
    order = sorted(
        (r for r in kept if not r.pinned),
        key=lambda r: (r.rank, r.busy, r.last_used, r.id),
    )
    for r in order:
        victims.append(r.id)
        reason[r.id] = "make_room"
        free += r.footprint_gb
        if target.footprint_gb <= free + _EPSILON:
            return Plan(evict=tuple(victims), reason=reason)
    # 6. Only pinned models stand in the way.
    pinned = ", ".join(sorted(r.id for r in kept if r.pinned))
    return Infeasible(f"model {target.id!r} does not fit next to the pinned models ({pinned})")


def overflow(residents: Sequence[Resident], budget_gb: float, keep: str) -> tuple[str, ...] | Infeasible:
    """After a load measured larger than its estimate: who goes so that usage fits again.

    Same order as rule 5, never ``keep`` (the model just loaded) nor a pinned model.
    """
    excess = used_gb(residents) - budget_gb
    if excess <= _EPSILON:
        return ()
    victims: list[str] = []
    order = sorted(
        (r for r in residents if r.id != keep and not r.pinned),
        key=lambda r: (r.rank, r.busy, r.last_used, r.id),
    )
    for r in order:
        victims.append(r.id)
        excess -= r.footprint_gb
        if excess <= _EPSILON:
            return tuple(victims)
    return Infeasible(f"model {keep!r} measured larger than the VRAM budget allows next to pinned models")


def host_room(
    need_gb: float, parked: Sequence[Resident], budget_gb: float, keep: str | None = None
) -> tuple[str, ...] | Infeasible:
    """Rule 7: which of ``parked`` to drop so that ``need_gb`` more fits in the host RAM budget;
    ``keep`` (the model the swap brings back) counts but is never dropped. Pure, like ``plan``."""
    if need_gb > budget_gb + _EPSILON:
        return Infeasible(f"{need_gb:g} GB does not fit in the {budget_gb:g} GB host RAM budget")
    excess = used_gb(parked) + need_gb - budget_gb
    victims: list[str] = []
    for r in sorted((r for r in parked if r.id != keep), key=lambda r: (r.rank, r.last_used, r.id)):
        if excess <= _EPSILON:
            break
        victims.append(r.id)
        excess -= r.footprint_gb
    if excess > _EPSILON:  # what stays parked (the swap's target) leaves no room
        return Infeasible(f"{need_gb:g} GB does not fit next to the models that stay parked")
    return tuple(victims)
