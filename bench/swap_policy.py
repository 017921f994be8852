"""Swaps under FIFO vs the switch policy: ``python -m bench.swap_policy`` prints one table.

Workloads are replayed through the real ``ResidencyController`` on a virtual clock: an event
loop whose time jumps to the next timer instead of sleeping, so minutes of traffic run in well
under a second and the numbers do not depend on the machine. Loads and unloads are simulated
with costs from realistic sizes (a load ≈ 2 s for 4 GB, ≈ 8 s for 13 GB, linear between; an
unload 0.2 s + 0.02 s/GB); requests hold their lease for a fixed serving time.

FIFO is today's policy, first-come first-served swaps: the same controller with
``max_wait_s = 0``, which makes every waiter stale at once (switch rule 2), so no swap is held.
*warm* is the switch policy with the warm host-RAM tier on (``host_ram_budget_gb`` = 32): an
evicted model is parked (a device→host copy) and comes back by an un-park (host→device), both
simulated at ``PCIE_GB_S`` (a pinned copy over PCIe 4.0 x16) plus ``UNPARK_FIXED_S``.

Columns: swaps (loads and evictions the controller started), switch time (simulated unload +
load seconds), *leased* (the share of the run during which some request held a lease: strict,
it counts an agent's tool time on a resident model as idle), *serving* (the share of the run not
spent unloading or loading: the GPU held by a model that serves whoever asks), p50/p99/max wait
(arrival to lease), and the run's length (the same work in both rows).
"""

from __future__ import annotations

import asyncio
import logging
import selectors
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.registry.config import Limits
from llmux.residency.controller import ResidencyController
from llmux.residency.memory import measure

MAX_WAIT_S = 15.0
SIZES = {
    "gpt-oss-20b": (ModelType.LLM, 13.0),
    "qwen3.5-9b": (ModelType.LLM, 9.0),
    "cohere-transcribe": (ModelType.ASR, 4.0),
    "chatterbox": (ModelType.TTS, 2.0),
}


def load_s(gb: float) -> float:
    return (2 * gb - 2) / 3  # 4 GB -> 2 s, 13 GB -> 8 s


def unload_s(gb: float) -> float:
    return 0.2 + 0.02 * gb


PCIE_GB_S = 12.0
UNPARK_FIXED_S = 0.1


def copy_s(gb: float) -> float:
    """A park or an un-park: the weights over PCIe, plus a little bookkeeping."""
    return UNPARK_FIXED_S + gb / PCIE_GB_S


class _VirtualSelector:
    """Wraps the loop's selector: a wait for the next timer advances virtual time instead."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualLoop) -> None:
        self._real, self._loop = real, loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("deadlock: nothing scheduled and nothing ready")
        self._loop.now += max(timeout, 0.0)
        return self._real.select(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: ``asyncio.sleep(8)`` returns at once, 8 s later."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._selector = _VirtualSelector(self._selector, self)  # type: ignore[has-type, assignment]  # asyncio internals

    def time(self) -> float:
        return self.now


class SimulatedModel:
    def __init__(self, spec: PhysicalModel) -> None:
        self.spec = spec

    def load(self) -> float | None:
        return None

    def unload(self) -> None:
        return None

    def park(self) -> float | None:
        return self.spec.vram_gb

    def unpark(self) -> float | None:
        return None


@dataclass
class Run:
    """What one workload measured under one policy."""

    controller: ResidencyController
    loop: VirtualLoop
    waits: list[float] = field(default_factory=list)
    leases: int = 0
    serving_since: float = 0.0
    serving_s: float = 0.0

    async def request(self, model: str, serve_s: float) -> None:
        arrived = self.loop.time()
        async with self.controller.lease(model):
            self.waits.append(self.loop.time() - arrived)
            if self.leases == 0:
                self.serving_since = self.loop.time()
            self.leases += 1
            try:
                await asyncio.sleep(serve_s)
            finally:
                self.leases -= 1
                if self.leases == 0:
                    self.serving_s += self.loop.time() - self.serving_since


Workload = Callable[[Run], Coroutine[Any, Any, None]]


async def agents(run: Run) -> None:
    """(a) Two agent clients, one on gpt-oss-20b and one on Qwen3.5-9B (they never fit together):
    each runs 40 short turns (1 s of generation, then 0.3 s running a tool)."""

    async def agent(model: str) -> None:
        for _ in range(40):
            await run.request(model, 1.0)
            await asyncio.sleep(0.3)

    await asyncio.gather(agent("gpt-oss-20b"), agent("qwen3.5-9b"))


async def chat_with_voice(run: Run) -> None:
    """(b) One user on Qwen3.5-9B who dictates (ASR), reads the answer, has it read aloud (TTS):
    20 rounds of dictation 1 s, chat 6 s, read-aloud 3 s, 8 s of thinking."""
    for _ in range(20):
        await run.request("cohere-transcribe", 1.0)
        await asyncio.sleep(0.5)
        await run.request("qwen3.5-9b", 6.0)
        await run.request("chatterbox", 3.0)
        await asyncio.sleep(8.0)


async def llm_and_asr_bursts(run: Run) -> None:
    """(c) An agent on gpt-oss-20b (13 GB: no room for ASR beside it), 60 turns of 2 s + 0.5 s,
    while every 30 s a burst of 4 dictations (1 s each, 2 s apart) arrives."""

    async def agent() -> None:
        for _ in range(60):
            await run.request("gpt-oss-20b", 2.0)
            await asyncio.sleep(0.5)

    async def dictation(after_s: float) -> None:
        await asyncio.sleep(after_s)
        await run.request("cohere-transcribe", 1.0)

    bursts = [dictation(30.0 * burst + 2.0 * i) for burst in range(1, 6) for i in range(4)]
    await asyncio.gather(agent(), *bursts)


def registry(host_ram_gb: float = 0.0) -> Registry:
    physical = {
        mid: PhysicalModel(type=kind, backend="simulated", weights=mid, vram_gb=gb, id=mid)
        for mid, (kind, gb) in SIZES.items()
    }
    limits = Limits(max_wait_s=MAX_WAIT_S)
    return Registry(16.0, Path("."), None, limits, physical, {}, host_ram_budget_gb=host_ram_gb)


async def _offload(fn: Callable[..., Any], *args: Any) -> Any:
    call = args[0] if fn is measure else fn  # a bound load / unpark (measured), unload / park
    cost = {"load": load_s, "unload": unload_s, "park": copy_s, "unpark": copy_s}.get(getattr(call, "__name__", ""))
    if cost is not None:  # else building the engine: free here
        await asyncio.sleep(cost(call.__self__.spec.vram_gb))
    return fn(*args)


@dataclass(frozen=True)
class Row:
    workload: str
    policy: str
    swaps: int
    switch_s: float
    leased_share: float
    waits: list[float]
    length_s: float

    @property
    def max_wait(self) -> float:
        return max(self.waits)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.waits)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def replay(workload: Workload, policy: str) -> Row:
    loop = VirtualLoop()
    try:
        controller = ResidencyController(
            registry(32.0 if policy == "warm" else 0.0),
            lambda spec, _: SimulatedModel(spec),
            clock=loop.time,
            offload=_offload,
        )
        if policy == "fifo":
            controller.max_wait_s = 0.0  # every waiter is stale at once: nothing is ever held
        run = Run(controller, loop)
        loop.run_until_complete(workload(run))
        length = loop.time()
        switching = sum(s.total_s for (_, phase), s in controller.costs.snapshot().items() if phase != "drain")
        name = (workload.__doc__ or "").split(")")[0] + ")"
        return Row(name, policy, controller.swaps, switching, run.serving_s / length, run.waits, length)

    finally:
        loop.close()


def quiet() -> None:
    """The controller logs every load and grant; the table is the output here."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def longest_switch_s() -> float:
    """One switch at its worst here: drain (the longest request, 6 s) + unload + load of the largest."""
    gb = max(gb for _, gb in SIZES.values())
    return 6.0 + unload_s(gb) + load_s(gb)


def table(rows: list[Row]) -> str:
    lines = [
        "bench.swap_policy (virtual clock, simulated load/unload/park/un-park costs; max_wait_s = 15)",
        f"{'workload':<4} {'policy':<7} {'swaps':>5} {'switch s':>8} {'leased':>7} {'serving':>7} "
        f"{'p50 wait':>8} {'p99 wait':>8} {'max wait':>8} {'run s':>6}",
    ]
    for r in rows:
        lines.append(
            f"{r.workload:<4} {r.policy:<7} {r.swaps:>5} {r.switch_s:>8.1f} {r.leased_share:>7.1%} "
            f"{1 - r.switch_s / r.length_s:>7.1%} "
            f"{r.percentile(0.5):>8.2f} {r.percentile(0.99):>8.2f} {r.max_wait:>8.2f} {r.length_s:>6.0f}"
        )
    return "\n".join(lines)


WORKLOADS: list[Workload] = [agents, chat_with_voice, llm_and_asr_bursts]


def main() -> None:
    quiet()
    rows = [replay(w, policy) for w in WORKLOADS for policy in ("fifo", "switch", "warm")]
    print(table(rows))


if __name__ == "__main__":
    main()
