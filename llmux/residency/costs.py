"""Measured switch costs: per model and phase (drain, unload, load; park and unpark for the
warm host-RAM tier), a moving average.

The switch policy (``switch.py``) estimates what a swap costs from these; ``/metrics`` shows
both the averages and every phase's count and total. Only successful phases are counted: a
failed or timed-out load says nothing about how long a good one takes.
"""

from __future__ import annotations

from dataclasses import dataclass

PHASES = ("drain", "unload", "load", "park", "unpark")
ALPHA = 0.3
"""Weight of the newest sample: a model's cost settles in a few swaps and follows a slower disk."""


@dataclass(slots=True)
class PhaseStats:
    average_s: float = 0.0
    count: int = 0
    total_s: float = 0.0


class SwitchCosts:
    """Moving averages of how long each model's switch phases took."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], PhaseStats] = {}

    def observe(self, model: str, phase: str, seconds: float) -> None:
        stats = self._stats.setdefault((model, phase), PhaseStats())
        seconds = max(seconds, 0.0)
        stats.average_s = seconds if stats.count == 0 else ALPHA * seconds + (1 - ALPHA) * stats.average_s
        stats.count += 1
        stats.total_s += seconds

    def estimate(self, model: str, phase: str) -> float:
        """The moving average, or 0 s when never measured (the policy holds nothing on a guess)."""
        stats = self._stats.get((model, phase))
        return stats.average_s if stats is not None else 0.0

    def measured(self, model: str, phase: str) -> bool:
        return (model, phase) in self._stats

    def switch_s(
        self, target: str, victims: tuple[str, ...], *, warm: bool = False, parking: frozenset[str] = frozenset()
    ) -> float:
        """Estimated cost of evicting ``victims`` and loading ``target``.

        ``warm``: the target is parked, so it comes back by an un-park — its measured un-park
        time once there is one (a copy from host RAM: cheaper than a cold load), until then its
        load time (never more than a cold load). Victims in ``parking`` are priced by their
        park time (a copy to host RAM) when measured, else by their unload time.
        """
        evict = sum(self._either(v, "park" if v in parking else "unload", "unload") for v in victims)
        return evict + self._either(target, "unpark" if warm else "load", "load")

    def _either(self, model: str, phase: str, fallback: str) -> float:
        return self.estimate(model, phase if self.measured(model, phase) else fallback)

    def snapshot(self) -> dict[tuple[str, str], PhaseStats]:
        """(model, phase) -> a copy of its stats, for ``/metrics``."""
        return {key: PhaseStats(s.average_s, s.count, s.total_s) for key, s in self._stats.items()}
