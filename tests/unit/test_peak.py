"""A model's footprint follows the peak it needs while serving (KV cache, activations): adopted
after its last lease, kept across reloads, and corrected like an over-budget load."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from llmux.engines.torch_park import PeakMeter
from llmux.protocol.errors import ModelCannotFit
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.registry.config import Limits
from llmux.residency.controller import ResidencyController

SIZES = {"llm": (ModelType.LLM, 9.0), "asr": (ModelType.ASR, 4.0), "tts": (ModelType.TTS, 2.0)}


class PeakBackend:
    def __init__(self, spec: PhysicalModel, log: list[str]) -> None:
        self.spec, self.log = spec, log
        self.peak: float | None = None

    def load(self) -> float | None:
        self.log.append(f"load {self.spec.id}")
        return self.spec.vram_gb  # measured as estimated

    def unload(self) -> None:
        self.log.append(f"unload {self.spec.id}")

    def peak_gb(self) -> float | None:
        return self.peak


def controller(log: list[str], engines: dict[str, PeakBackend]) -> ResidencyController:
    physical = {mid: PhysicalModel(type=k, backend="transformers", weights=mid, vram_gb=gb, id=mid)
                for mid, (k, gb) in SIZES.items()}

    def factory(spec: PhysicalModel, _: Registry) -> PeakBackend:
        engines[spec.id] = PeakBackend(spec, log)
        return engines[spec.id]

    async def offload(fn: Any, *args: Any) -> Any:
        return fn(*args)

    registry = Registry(16.0, Path("/nonexistent"), None, Limits(), physical, {})
    return ResidencyController(registry, factory, offload=offload)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def footprints(c: ResidencyController) -> dict[str, tuple[str, float]]:
    return {v.id: (v.state, v.vram_gb) for v in c.status()}


async def test_a_grown_peak_replaces_the_footprint_and_evicts_what_no_longer_fits() -> None:
    log: list[str] = []
    engines: dict[str, PeakBackend] = {}
    c = controller(log, engines)
    for model in ("tts", "asr", "llm"):
        await c.load(model)
    assert c.used_gb == 15
    async with c.lease("llm"):
        engines["llm"].peak = 11.5  # a long prompt's KV cache
        assert c.used_gb == 15  # noticed when the last lease goes, not mid-request
    await settle()
    assert footprints(c)["llm"] == ("ready", 11.5)
    assert log[-1] == "unload tts" and c.used_gb == 15.5  # lowest priority first, only as needed


async def test_a_peak_is_kept_across_reloads() -> None:
    log: list[str] = []
    engines: dict[str, PeakBackend] = {}
    c = controller(log, engines)
    await c.load("llm")
    async with c.lease("llm"):
        engines["llm"].peak = 12.0
    await c.unload("llm")
    await c.load("llm")  # measures 9 GB at load again
    assert footprints(c)["llm"] == ("ready", 12.0)
    await c.load("asr")  # 12 + 4 fits exactly
    await c.load("tts")  # 12 + 4 + 2 does not: the LLM goes first
    assert footprints(c)["llm"][0] == "unloaded"


async def test_a_peak_beyond_the_budget_gives_the_model_back_and_refuses_it_next_time() -> None:
    log: list[str] = []
    engines: dict[str, PeakBackend] = {}
    c = controller(log, engines)
    await c.load("llm")
    async with c.lease("llm"):
        engines["llm"].peak = 17.0
    await settle()
    assert footprints(c)["llm"] == ("unloaded", 17.0) and log[-1] == "unload llm"
    with pytest.raises(ModelCannotFit):
        await c.load("llm")


def test_the_peak_meter_measures_nothing_without_cuda() -> None:
    meter = PeakMeter("cpu")
    meter.loaded(1.0)
    with meter.serving():
        pass
    assert meter.peak_gb is None
