"""Honest memory around swaps: a load waits (bounded) for the device to show the target's
footprint plus the headroom free — freed memory can reappear late after an unload."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog

from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.registry.config import Limits
from llmux.residency.controller import ResidencyController
from llmux.residency.memory import wait_for_room


class Backend:
    def __init__(self, spec: PhysicalModel) -> None:
        self.spec = spec

    def load(self) -> float | None:
        return None

    def unload(self) -> None:
        pass


def controller(free: list[float | None], naps: list[float]) -> ResidencyController:
    physical = {
        m: PhysicalModel(type=ModelType.LLM, backend="x", weights=m, vram_gb=gb, id=m)
        for m, gb in (("a", 9.0), ("b", 13.0))
    }
    registry = Registry(16.0, Path("/nonexistent"), None, Limits(vram_headroom_gb=1.0), physical, {})

    async def offload(fn: Any, *args: Any) -> Any:
        return fn(*args)

    async def nap(seconds: float) -> None:
        if seconds < 1:  # a poll; the load timeout's timer sleeps too, and never fires here
            naps.append(seconds)
        else:
            await asyncio.Event().wait()

    c = ResidencyController(registry, lambda spec, _: Backend(spec), offload=offload, sleep=nap)
    readings = iter(free)
    c._device_free_gb = lambda: next(readings, free[-1])  # type: ignore[method-assign]  # the device, simulated
    return c


async def test_a_load_waits_for_freed_memory_to_reappear() -> None:
    naps: list[float] = []
    # after a's unload the device shows 5 GB, then 10, then 14.5: b (13 + 1 headroom) loads then
    c = controller([15.0, 5.0, 10.0, 14.5], naps)
    await c.load("a")
    with structlog.testing.capture_logs() as logs:
        await c.load("b")
    assert [v.id for v in c.status() if v.state != "unloaded"] == ["b"]
    assert len(naps) == 2
    assert not [e for e in logs if e["event"] == "model.device_memory_short"]


async def test_a_load_that_never_finds_room_is_tried_anyway_and_said_so() -> None:
    naps: list[float] = []
    c = controller([15.0, 3.0], naps)
    await c.load("a")
    with structlog.testing.capture_logs() as logs:
        await c.load("b")
    short = [e for e in logs if e["event"] == "model.device_memory_short"]
    assert short and short[0]["need_gb"] == 14.0 and short[0]["free_gb"] == 3.0
    assert sum(naps) <= 5.0 + 1e-9  # bounded: at most 50 polls 0.1 s apart
    assert c.status()[1].state == "ready"


async def test_without_cuda_nothing_waits() -> None:
    naps: list[float] = []
    assert await wait_for_room(100.0, lambda: None, asyncio.sleep) is None
    c = controller([None], naps)
    await c.load("b")
    assert naps == []
