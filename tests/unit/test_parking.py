"""The warm host-RAM tier, scenario by scenario: an evicted model is parked (not unloaded) when
its runtime can park and the host budget has room, a later request un-parks it, parked models
are dropped LRU to make room, never the one coming back, and what fails falls back to unload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmux.protocol.errors import ModelLoadFailed
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.registry.config import Limits
from llmux.residency.controller import ResidencyController
from llmux.residency.costs import SwitchCosts
from llmux.residency.planner import Infeasible, Resident, host_room

SIZES = {"llm-a": (ModelType.LLM, 9.0), "llm-b": (ModelType.LLM, 9.0), "llm-c": (ModelType.LLM, 6.0)}


class ParkingBackend:
    """Records what residency asked of it; ``park_to`` is what ``park`` reports (None declines)."""

    def __init__(self, spec: PhysicalModel, log: list[str], park_to: float | None, unpark_fails: bool) -> None:
        self.spec, self.log, self.park_to, self.unpark_fails = spec, log, park_to, unpark_fails
        self.where = "nowhere"

    def load(self) -> float | None:
        self.log.append(f"load {self.spec.id}")
        self.where = "device"
        return None

    def unload(self) -> None:
        self.log.append(f"unload {self.spec.id}")
        self.where = "nowhere"

    def park(self) -> float | None:
        self.log.append(f"park {self.spec.id}")
        if self.park_to is not None:
            self.where = "host"
        return self.park_to

    def unpark(self) -> float | None:
        self.log.append(f"unpark {self.spec.id}")
        assert self.where == "host"
        if self.unpark_fails:
            raise RuntimeError("CUDA error: out of memory")
        self.where = "device"
        return None


class Harness:
    def __init__(self, host_gb: float, park_to: dict[str, float | None] | None = None, unpark_fails: bool = False):
        physical = {
            mid: PhysicalModel(type=kind, backend="transformers", weights=mid, vram_gb=gb, id=mid)
            for mid, (kind, gb) in SIZES.items()
        }
        registry = Registry(16.0, Path("/nonexistent"), None, Limits(), physical, {}, host_ram_budget_gb=host_gb)
        self.log: list[str] = []
        self.engines: dict[str, list[ParkingBackend]] = {}
        self.park_to = park_to or {}
        self.unpark_fails = unpark_fails
        self.controller = ResidencyController(registry, self.factory, offload=self.offload)

    def factory(self, spec: PhysicalModel, _: Registry) -> ParkingBackend:
        engine = ParkingBackend(spec, self.log, self.park_to.get(spec.id, SIZES[spec.id][1]), self.unpark_fails)
        self.engines.setdefault(spec.id, []).append(engine)
        return engine

    async def offload(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def states(self) -> dict[str, str]:
        return {v.id: v.state for v in self.controller.status()}

    def host(self) -> dict[str, float]:
        return {v.id: v.host_gb for v in self.controller.status() if v.host_gb}


async def test_a_swap_parks_the_evicted_llm_and_a_later_request_unparks_the_same_engine() -> None:
    # Both fit: swapping back, b is parked while a is still in host RAM (a leaves it after).
    h = Harness(host_gb=18)
    await h.controller.load("llm-a")
    await h.controller.load("llm-b")
    assert h.states() == {"llm-a": "parked", "llm-b": "ready", "llm-c": "unloaded"}
    assert h.log == ["load llm-a", "park llm-a", "load llm-b"]
    assert h.controller.used_gb == 9 and h.controller.host_used_gb == 9
    host = h.controller.host_ram()
    assert host is not None and host.parked == ["llm-a"] and host.free_gb == 9
    await h.controller.load("llm-a")
    assert h.log[3:] == ["park llm-b", "unpark llm-a"]
    assert len(h.engines["llm-a"]) == 1 and h.engines["llm-a"][0].where == "device"  # no cold load
    assert h.states() == {"llm-a": "ready", "llm-b": "parked", "llm-c": "unloaded"}
    assert h.controller.costs.measured("llm-a", "unpark") and h.controller.costs.measured("llm-b", "park")
    a = next(v for v in h.controller.status() if v.id == "llm-a")
    assert (a.loads, a.unparks) == (1, 1)


async def test_without_a_host_budget_an_evicted_model_is_unloaded() -> None:
    h = Harness(host_gb=0)
    await h.controller.load("llm-a")
    await h.controller.load("llm-b")
    assert h.log == ["load llm-a", "unload llm-a", "load llm-b"]
    assert h.controller.host_ram() is None


async def test_a_model_larger_than_the_host_budget_is_unloaded_not_parked() -> None:
    h = Harness(host_gb=8)
    await h.controller.load("llm-a")
    await h.controller.load("llm-c")
    assert h.log == ["load llm-a", "unload llm-a", "load llm-c"]
    assert h.states()["llm-a"] == "unloaded"


async def test_parked_models_are_dropped_least_recently_used_first() -> None:
    h = Harness(host_gb=15)
    await h.controller.load("llm-a")
    await h.controller.load("llm-b")  # parks a (9 GB)
    await h.controller.load("llm-c")  # parking b (9) needs a dropped
    assert h.log[-3:] == ["unload llm-a", "park llm-b", "load llm-c"]
    assert h.states() == {"llm-a": "unloaded", "llm-b": "parked", "llm-c": "ready"}
    assert h.controller.host_used_gb <= 15


async def test_the_model_coming_back_is_never_dropped_to_park_the_one_leaving() -> None:
    h = Harness(host_gb=9)  # room for one parked LLM
    await h.controller.load("llm-a")
    await h.controller.load("llm-b")  # a parked
    await h.controller.load("llm-a")  # b cannot be parked next to a (a stays until it is back)
    assert h.log[-2:] == ["unload llm-b", "unpark llm-a"]
    assert h.states() == {"llm-a": "ready", "llm-b": "unloaded", "llm-c": "unloaded"}


async def test_a_runtime_that_declines_or_reports_too_much_is_unloaded() -> None:
    h = Harness(host_gb=10, park_to={"llm-a": None, "llm-b": 12.0})
    await h.controller.load("llm-a")
    await h.controller.load("llm-b")
    assert h.log[-3:] == ["park llm-a", "unload llm-a", "load llm-b"]
    await h.controller.load("llm-c")  # b reports 12 GB in host RAM: more than the budget
    assert h.log[-3:] == ["park llm-b", "unload llm-b", "load llm-c"]
    assert h.controller.host_used_gb == 0


async def test_an_admin_unload_of_a_parked_model_frees_its_host_ram() -> None:
    h = Harness(host_gb=10)
    await h.controller.load("llm-a")
    await h.controller.load("llm-b")
    await h.controller.unload("llm-a")
    assert h.states()["llm-a"] == "unloaded" and h.log[-1] == "unload llm-a"
    assert h.controller.host_used_gb == 0
    await h.controller.unload("llm-b")  # an admin unload frees, never parks
    assert h.states()["llm-b"] == "unloaded" and h.log[-1] == "unload llm-b"


async def test_a_failed_unpark_unloads_the_host_copy_and_fails_its_waiters() -> None:
    h = Harness(host_gb=10, unpark_fails=True)
    await h.controller.load("llm-a")
    await h.controller.load("llm-b")
    with pytest.raises(ModelLoadFailed):
        await h.controller.load("llm-a")
    assert h.log[-2:] == ["unpark llm-a", "unload llm-a"]
    assert h.states()["llm-a"] == "unloaded" and h.controller.host_used_gb == 0
    assert h.engines["llm-a"][0].where == "nowhere"


async def test_shutdown_unloads_parked_models() -> None:
    h = Harness(host_gb=10)
    await h.controller.load("llm-a")
    await h.controller.load("llm-b")
    await h.controller.shutdown(grace_s=5)
    assert all(e.where == "nowhere" for engines in h.engines.values() for e in engines)


# ---- the pure parts -----------------------------------------------------------------------------


def test_host_room_drops_lowest_priority_then_least_recently_used() -> None:
    parked = [
        Resident("asr", ModelType.ASR, 4.0, last_used=1.0),
        Resident("old-llm", ModelType.LLM, 9.0, last_used=2.0),
        Resident("tts", ModelType.TTS, 2.0, last_used=0.0),
    ]
    assert host_room(2.0, parked, 17.0) == ()
    assert host_room(6.0, parked, 17.0) == ("old-llm",)
    assert host_room(15.0, parked, 17.0) == ("old-llm", "tts", "asr")
    assert isinstance(host_room(18.0, parked, 17.0), Infeasible)
    assert host_room(6.0, parked, 17.0, keep="old-llm") == ("tts", "asr")
    assert isinstance(host_room(9.0, parked, 17.0, keep="old-llm"), Infeasible)  # only old-llm would do


def test_an_unpark_is_priced_by_its_measurement_once_there_is_one() -> None:
    costs = SwitchCosts()
    costs.observe("a", "load", 8.0)
    costs.observe("b", "unload", 0.5)
    assert costs.switch_s("a", ("b",), warm=True) == 8.5  # never measured: no cheaper than cold
    costs.observe("a", "unpark", 1.0)
    costs.observe("b", "park", 2.0)
    assert costs.switch_s("a", ("b",), warm=True) == 1.5
    assert costs.switch_s("a", ("b",), warm=True, parking=frozenset({"b"})) == 3.0
    assert costs.switch_s("a", ("b",)) == 8.5

