"""The residency controller under random traffic: requests, releases, cancellations, slow and
failing loads, loads that measure larger or smaller than estimated, pins and admin unloads.

Loads are gated by the test (no clock, no threads): a load starts, and a later rule decides
when it finishes and how. After every step the invariants must hold.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmux.protocol.errors import LlmuxError, ModelCannotFit, ModelLoadFailed
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.registry.config import Limits
from llmux.residency.controller import ResidencyController
from llmux.residency.memory import measure
from llmux.residency.slots import Lease

BUDGET = 16.0
MODELS = {
    "llm-9": (ModelType.LLM, 9.0),
    "llm-13": (ModelType.LLM, 13.0),
    "llm-4": (ModelType.LLM, 4.0),
    "asr-4": (ModelType.ASR, 4.0),
    "asr-2": (ModelType.ASR, 2.0),
    "tts-2a": (ModelType.TTS, 2.0),
    "tts-2b": (ModelType.TTS, 2.0),
    "huge": (ModelType.LLM, 20.0),
}


def registry() -> Registry:
    physical = {
        mid: PhysicalModel(type=kind, backend="transformers", weights=mid, vram_gb=gb, id=mid)
        for mid, (kind, gb) in MODELS.items()
    }
    return Registry(BUDGET, Path("/nonexistent"), None, Limits(), physical, {})


class GatedBackend:
    """Its load waits for the test to say how it ends: (ok, measured GB or None)."""

    def __init__(self, spec: PhysicalModel) -> None:
        self.spec = spec
        self.outcome: tuple[bool, float | None] = (True, None)
        self.loaded = False

    def load(self) -> float | None:
        ok, measured = self.outcome
        if not ok:
            raise RuntimeError(f"{self.spec.id}: CUDA out of memory (simulated)")
        self.loaded = True
        return measured

    def unload(self) -> None:
        assert self.loaded
        self.loaded = False


MODEL_IDS = st.sampled_from(sorted(MODELS))


class ControllerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.gate: asyncio.Future[None] | None = None
        self.loading: GatedBackend | None = None
        self.backends: dict[str, GatedBackend] = {}
        self.controller = ResidencyController(registry(), self._factory, offload=self._offload, clock=self._tick)
        self.now = 0.0
        self.waiting: list[asyncio.Task[Lease]] = []
        self.admin: list[asyncio.Task[None]] = []
        self.held: list[Lease] = []
        self.failures: list[BaseException] = []
        structlog.configure(processors=[self._check_eviction, structlog.processors.KeyValueRenderer()], cache_logger_on_first_use=False)

    # ---- the test's side of the controller ------------------------------------------------

    def _tick(self) -> float:
        self.now += 1.0
        return self.now

    def _factory(self, spec: PhysicalModel, _: Registry) -> GatedBackend:
        return self.backends.setdefault(spec.id, GatedBackend(spec))

    async def _offload(self, fn: Any, *args: Any) -> Any:
        if fn is measure:
            self.loading = args[0].__self__
            self.gate = self.loop.create_future()
            await self.gate
            self.gate, self.loading = None, None
        else:  # an unload: the victim holds no lease and is in `evicting`
            slot = self.controller._slots[fn.__self__.spec.id]
            assert slot.state == "evicting" and slot.leases == 0
        await asyncio.sleep(0)
        return fn(*args)

    def _check_eviction(self, _: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("event") == "model.evicted" and event.get("reason") == "make_room":
            victim = MODELS[event["model"]][0].priority
            for view in self.controller.status():
                if view.state != "unloaded" and not view.pinned and view.id != event["model"]:
                    # Nothing of lower priority than the victim was left resident.
                    assert MODELS[view.id][0].priority >= victim, (event, view)
        raise structlog.DropEvent

    def settle(self) -> None:
        async def spin() -> None:
            for _ in range(60):
                await asyncio.sleep(0)

        self.loop.run_until_complete(spin())
        for task in [t for t in self.waiting if t.done()]:
            self.waiting.remove(task)
            if task.cancelled():
                continue
            error = task.exception()
            if error is None:
                self.held.append(task.result())
            else:
                assert isinstance(error, (ModelCannotFit, ModelLoadFailed)), repr(error)
                self.failures.append(error)
        for task in [t for t in self.admin if t.done()]:
            self.admin.remove(task)
            assert task.exception() is None

    # ---- rules ----------------------------------------------------------------------------

    @rule(model=MODEL_IDS)
    def request(self, model: str) -> None:
        self.waiting.append(self.loop.create_task(self.controller.acquire(model)))
        self.settle()

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        lease = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.controller.release(lease)
        self.settle()

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def client_goes_away(self, data: st.DataObject) -> None:
        self.waiting[data.draw(st.integers(0, len(self.waiting) - 1))].cancel()
        self.settle()

    @precondition(lambda self: self.gate is not None)
    @rule(ok=st.booleans(), factor=st.sampled_from([None, 0.5, 1.0, 1.3]))
    def finish_load(self, ok: bool, factor: float | None) -> None:
        assert self.loading is not None and self.gate is not None
        estimate = self.loading.spec.vram_gb
        self.loading.outcome = (ok, None if factor is None else estimate * factor)
        self.gate.set_result(None)
        self.settle()

    @rule(model=st.sampled_from(["asr-4", "asr-2", "tts-2a"]), pinned=st.booleans())
    def pin(self, model: str, pinned: bool) -> None:
        self.controller.pin(model, pinned)

    @rule(model=MODEL_IDS)
    def admin_unload(self, model: str) -> None:
        self.admin.append(self.loop.create_task(self.controller.unload(model)))
        self.settle()

    # ---- invariants -----------------------------------------------------------------------

    @invariant()
    def within_budget(self) -> None:
        # A load that measured larger than estimated may overshoot until its correction,
        # which runs inside the same swap; outside a swap the budget always holds.
        if self.controller._swap is None:
            assert self.controller.used_gb <= BUDGET + 1e-6

    @invariant()
    def one_llm_one_tts(self) -> None:
        views = [v for v in self.controller.status() if v.state != "unloaded"]
        assert sum(v.type == "llm" for v in views) <= 1
        assert sum(v.type == "tts" for v in views) <= 1

    @invariant()
    def leased_models_are_serving_and_counted(self) -> None:
        counts: dict[str, int] = {}
        for lease in self.held:
            counts[lease.model] = counts.get(lease.model, 0) + 1
        for view in self.controller.status():
            assert view.leases == counts.get(view.id, 0), view
            if view.leases:
                assert view.state == "serving"

    @invariant()
    def never_loads_what_cannot_fit(self) -> None:
        assert self.controller._slots["huge"].state == "unloaded"

    def teardown(self) -> None:
        try:
            for lease in self.held:
                self.controller.release(lease)
            self.held.clear()
            for _ in range(40):  # let every queued request and load run to its end
                if self.gate is not None:
                    assert self.loading is not None
                    self.loading.outcome = (True, None)
                    self.gate.set_result(None)
                self.settle()
                for lease in self.held:
                    self.controller.release(lease)
                self.held.clear()
                if not self.waiting and not self.admin and self.gate is None:
                    break
            assert not self.waiting, "a request neither served nor failed"
            assert self.controller.queue_depth == 0
            assert all(v.leases == 0 for v in self.controller.status()), "lease leaked"
            assert self.controller.used_gb <= BUDGET + 1e-6
            assert all(isinstance(f, LlmuxError) and f.message for f in self.failures)
        finally:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()
            structlog.reset_defaults()


ControllerMachine.TestCase.settings = settings(
    max_examples=1000,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_controller_invariants = ControllerMachine.TestCase
test_controller_invariants = pytest.mark.slow(test_controller_invariants)
