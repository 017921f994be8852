"""The residency controller, scenario by scenario: the requirements' TST-016…019 with the
reference deployment's numbers, waiting, fairness, failures and measured footprints."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmux.protocol.errors import ModelCannotFit, ModelLoadFailed
from llmux.registry import PhysicalModel, Registry
from llmux.residency.controller import ResidencyController
from llmux.residency.memory import measure


class Backend:
    def __init__(self, spec: PhysicalModel, measured: float | None = None, fail: bool = False) -> None:
        self.spec, self.measured, self.fail = spec, measured, fail

    def load(self) -> float | None:
        if self.fail:
            raise RuntimeError("CUDA error: out of memory")
        return self.measured

    def unload(self) -> None:
        pass


class Harness:
    """A controller over the reference registry whose loads can be held open by the test."""

    def __init__(self, registry: Registry, **backend_args: dict[str, Any]) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.order: list[str] = []
        self.args = backend_args
        self.controller = ResidencyController(registry, self.factory, offload=self.offload)

    def factory(self, spec: PhysicalModel, _: Registry) -> Backend:
        return Backend(spec, **self.args.get(spec.id, {}))

    async def offload(self, fn: Any, *args: Any) -> Any:
        if fn == self.factory:
            return fn(*args)
        if fn is measure:
            model = args[0].__self__.spec.id
            self.order.append(f"load {model}")
            if model in self.gates:
                await self.gates[model].wait()
        else:
            self.order.append(f"unload {fn.__self__.spec.id}")
        return fn(*args)

    def resident(self) -> dict[str, str]:
        return {v.id: v.state for v in self.controller.status() if v.state != "unloaded"}

    async def use(self, *models: str) -> None:
        for model in models:
            await self.controller.load(model)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


# ---- TST-016…019 --------------------------------------------------------------------------------


async def test_tst016_small_llm_coexists_with_asr_and_tts(reference: Registry) -> None:
    h = Harness(reference)
    await h.use("cohere-transcribe", "chatterbox", "qwen3.5-4b")
    assert set(h.resident()) == {"cohere-transcribe", "chatterbox", "qwen3.5-4b"}
    assert h.controller.used_gb == 10


async def test_tst017_medium_llm_coexists_with_asr_and_tts(reference: Registry) -> None:
    h = Harness(reference)
    await h.use("cohere-transcribe", "chatterbox", "qwen3.5-9b-fp8")
    assert set(h.resident()) == {"cohere-transcribe", "chatterbox", "qwen3.5-9b-fp8"}
    assert h.controller.used_gb == 15


async def test_tst018_large_llm_evicts_tts_then_asr_and_asr_evicts_the_llm(reference: Registry) -> None:
    h = Harness(reference)
    await h.use("cohere-transcribe", "chatterbox", "gpt-oss-20b")
    assert set(h.resident()) == {"gpt-oss-20b"}
    assert h.order[-3:] == ["unload chatterbox", "unload cohere-transcribe", "load gpt-oss-20b"]
    await h.use("cohere-transcribe")
    assert set(h.resident()) == {"cohere-transcribe"}
    assert h.order[-2:] == ["unload gpt-oss-20b", "load cohere-transcribe"]


async def test_tst019_switching_llms_loads_the_second_and_evicts_the_first(reference: Registry) -> None:
    h = Harness(reference)
    await h.use("cohere-transcribe", "qwen3.5-4b", "qwen3.5-9b-fp8")
    assert set(h.resident()) == {"cohere-transcribe", "qwen3.5-9b-fp8"}
    assert h.order[-2:] == ["unload qwen3.5-4b", "load qwen3.5-9b-fp8"]


async def test_only_one_tts_variant_is_resident(reference: Registry) -> None:
    h = Harness(reference)
    await h.use("chatterbox", "chatterbox-turbo", "chatterbox-multilingual")
    assert set(h.resident()) == {"chatterbox-multilingual"}


# ---- waiting, fairness, failure -----------------------------------------------------------------


async def test_requests_for_a_loading_model_wait_for_that_one_load(reference: Registry) -> None:
    h = Harness(reference)
    h.gates["qwen3.5-4b"] = asyncio.Event()
    waiters = [asyncio.create_task(h.controller.acquire("qwen3.5-4b")) for _ in range(5)]
    await settle()
    assert h.resident() == {"qwen3.5-4b": "loading"}
    assert not any(w.done() for w in waiters)
    h.gates["qwen3.5-4b"].set()
    leases = await asyncio.gather(*waiters)
    assert h.order.count("load qwen3.5-4b") == 1
    assert h.resident() == {"qwen3.5-4b": "serving"}
    for lease in leases:
        h.controller.release(lease)
    assert h.resident() == {"qwen3.5-4b": "ready"}


async def test_a_stream_of_requests_for_the_resident_model_cannot_starve_a_swap(reference: Registry) -> None:
    h = Harness(reference)
    first = await h.controller.acquire("qwen3.5-4b")
    swap = asyncio.create_task(h.controller.acquire("gpt-oss-20b"))
    await settle()
    later = [asyncio.create_task(h.controller.acquire("qwen3.5-4b")) for _ in range(3)]
    await settle()
    assert not any(t.done() for t in later), "the draining model took new leases"
    assert not swap.done()
    h.controller.release(first)  # the only lease the swap waits for
    big = await swap
    assert h.resident() == {"gpt-oss-20b": "serving"}
    assert not any(t.done() for t in later)
    h.controller.release(big)
    for lease in await asyncio.gather(*later):
        h.controller.release(lease)
    assert h.order[-3:] == ["load gpt-oss-20b", "unload gpt-oss-20b", "load qwen3.5-4b"]


async def test_a_model_bigger_than_the_budget_is_refused_not_attempted(reference: Registry) -> None:
    registry = Registry(8.0, reference.models_dir, None, reference.limits, reference.physical, reference.virtual)
    h = Harness(registry)
    await h.use("qwen3.5-4b")
    with pytest.raises(ModelCannotFit, match="needs 13 GB but the whole VRAM budget is 8 GB"):
        await h.controller.acquire("gpt-oss-20b")
    assert h.resident() == {"qwen3.5-4b": "ready"}
    assert "load gpt-oss-20b" not in h.order


async def test_a_failed_load_fails_its_waiters_and_leaves_others_serving(reference: Registry) -> None:
    h = Harness(reference, **{"qwen3.5-4b": {"fail": True}})
    asr = await h.controller.acquire("cohere-transcribe")
    waiters = [asyncio.create_task(h.controller.acquire("qwen3.5-4b")) for _ in range(2)]
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ModelLoadFailed) and "out of memory" in r.message for r in results)
    assert h.resident() == {"cohere-transcribe": "serving"}
    h.controller.release(asr)
    views = {v.id: v for v in h.controller.status()}
    assert views["qwen3.5-4b"].last_error == "RuntimeError: CUDA error: out of memory"
    await h.use("qwen3.5-9b-fp8")  # the controller still works
    assert set(h.resident()) == {"cohere-transcribe", "qwen3.5-9b-fp8"}


async def test_a_waiter_whose_client_goes_away_leaves_the_queue(reference: Registry) -> None:
    h = Harness(reference)
    h.gates["qwen3.5-4b"] = asyncio.Event()
    waiter = asyncio.create_task(h.controller.acquire("qwen3.5-4b"))
    await settle()
    assert h.controller.queue_depth == 1
    waiter.cancel()
    await settle()
    assert h.controller.queue_depth == 0
    h.gates["qwen3.5-4b"].set()
    await settle()
    assert h.resident() == {"qwen3.5-4b": "ready"}  # loaded, nobody holds it


async def test_measured_footprint_replaces_the_estimate(reference: Registry) -> None:
    h = Harness(reference, **{"qwen3.5-9b-fp8": {"measured": 11.5}})
    await h.use("cohere-transcribe", "chatterbox", "qwen3.5-9b-fp8")
    # 11.5 + 4 + 2 > 16: the over-budget correction evicts the TTS (lowest priority left).
    assert set(h.resident()) == {"cohere-transcribe", "qwen3.5-9b-fp8"}
    assert h.controller.used_gb == 15.5
    view = next(v for v in h.controller.status() if v.id == "qwen3.5-9b-fp8")
    assert view.measured and view.vram_gb == 11.5


async def test_pinned_models_are_never_evicted(reference: Registry) -> None:
    h = Harness(reference)
    await h.use("cohere-transcribe")
    h.controller.pin("cohere-transcribe")
    with pytest.raises(ModelCannotFit, match="pinned"):
        await h.controller.acquire("gpt-oss-20b")
    assert h.resident() == {"cohere-transcribe": "ready"}


async def test_admin_unload_waits_for_leases_then_evicts(reference: Registry) -> None:
    h = Harness(reference)
    lease = await h.controller.acquire("qwen3.5-4b")
    unloading = asyncio.create_task(h.controller.unload("qwen3.5-4b"))
    await settle()
    assert h.resident() == {"qwen3.5-4b": "serving"}
    h.controller.release(lease)
    await unloading
    assert h.resident() == {}


async def test_shutdown_refuses_new_requests_and_unloads_everything(reference: Registry) -> None:
    h = Harness(reference)
    await h.use("cohere-transcribe", "qwen3.5-4b")
    await h.controller.shutdown(grace_s=1)
    assert h.resident() == {}
    with pytest.raises(Exception, match="shutting down"):
        await h.controller.acquire("qwen3.5-4b")
