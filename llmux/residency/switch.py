"""When to start a swap: a pure function of the waiters, the planned victims and measured costs.

The planner (``planner.plan``) decides *what* a swap evicts; this decides *when*. Serving waiters
strictly in arrival order swaps on every request when two clients alternate between two models
that do not fit together, and a swap costs seconds (weights read, runtime initialised) while
a request on a resident model costs nothing extra. So the model that has the GPU keeps it for a
serving window as long as the switch costs, and a staleness bound caps what that can cost anyone.

Rules, numbered as at the branches below:

1. A swap that evicts nothing (the target fits alongside) starts now: it takes nobody's GPU.
2. Staleness: once the target's oldest waiter has waited ``max_wait_s``, the swap starts now.
   So the policy never holds a waiter past ``max_wait_s``; what follows is one switch (drain
   the victims' running requests, unload them, load the target).
3. A victim nobody uses — no lease, no waiter, and idle for longer than the coalescing grace —
   does not hold the swap. The grace (``GRACE_FACTOR`` × the switch cost, at most ``GRACE_MAX_S``)
   covers a client between two turns (an agent running a tool): its next request coalesces with
   the ones already served instead of paying two switches.
4. A victim in use (leases, waiters, or released within the grace) keeps the GPU until its
   serving window ends: ``WINDOW_FACTOR`` × the switch cost, counted from when it became ready.
   The swap is held until the earliest of: that end, the grace's end (a victim idle now), and
   the staleness deadline of rule 2. The controller decides again at that instant.
5. Past every victim's window (or grace), the swap starts.

The switch cost is the measured moving average of the victims' unloads plus the target's load
(``costs.SwitchCosts``); a phase never measured counts 0 s, so nothing is held on a guess and a
fresh server behaves as first-come, first-served until it has seen its swaps.

While a swap is held, requests for the resident models keep being granted (they are not
draining), so requests for the same model are served together; once the swap starts its
victims drain and new requests for them queue behind it, as before. Eviction choices (rules
LLMUX-VRAM-002…005, pins, never under a lease) stay the planner's and are not changed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WINDOW_FACTOR = 2.0
"""Serving window = this × switch cost: at saturation at least 2/3 of the time serves."""
GRACE_FACTOR = 0.25
GRACE_MAX_S = 2.0
"""A wrong guess costs at most a quarter of a switch, and never more than 2 s."""


@dataclass(frozen=True, slots=True)
class Victim:
    """A resident model the planned swap would evict."""

    id: str
    ready_since: float
    """When it last became ready: the start of its serving window."""
    in_use: bool
    """Holds leases, or requests wait for it."""
    last_used: float
    """Its last acquire or release."""


@dataclass(frozen=True, slots=True)
class Pending:
    """The swap the earliest waiter needs."""

    target: str
    oldest_since: float
    """When the target's oldest waiter arrived."""
    cost_s: float
    """Estimated switch cost: the victims' unloads plus the target's load."""


@dataclass(frozen=True, slots=True)
class Start:
    reason: str
    """``fits`` (rule 1), ``stale`` (2) or ``idle`` / ``window_over`` (3, 5)."""


@dataclass(frozen=True, slots=True)
class Hold:
    until: float
    """Decide again at this instant (never later than the staleness deadline)."""
    reason: str
    """``serving`` (a victim is in use inside its window) or ``grace`` (idle within the grace)."""


def window_s(cost_s: float) -> float:
    return WINDOW_FACTOR * cost_s


def grace_s(cost_s: float) -> float:
    return min(GRACE_MAX_S, GRACE_FACTOR * cost_s)


def decide(now: float, pending: Pending, victims: Sequence[Victim], max_wait_s: float) -> Start | Hold:
    """Start the pending swap now, or hold it until an instant. Pure: no I/O, no clock."""
    # 1. Evicts nothing.
    if not victims:
        return Start("fits")
    # 2. Staleness forces the switch.
    stale_at = pending.oldest_since + max_wait_s
    if now >= stale_at:
        return Start("stale")
    window, grace = window_s(pending.cost_s), grace_s(pending.cost_s)
    until: float | None = None
    reason = ""
    for v in victims:
        window_end = v.ready_since + window
        if now >= window_end:
            continue  # 5. its window is over
        if v.in_use:
            end, why = window_end, "serving"  # 4. in use: the whole window
        elif now < v.last_used + grace:
            end, why = min(window_end, v.last_used + grace), "grace"  # 4. between two turns
        else:
            continue  # 3. nobody uses it
        if until is None or end > until:
            until, reason = end, why
    if until is None:
        return Start("idle" if any(now < v.ready_since + window for v in victims) else "window_over")
    return Hold(min(until, stale_at), reason)
