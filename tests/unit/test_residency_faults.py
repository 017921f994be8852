"""Residency faults: a failed or hung load never takes healthy models down, is refused fast
while broken, and leaks no server paths (issue 10, "Residency")."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import msgspec
import pytest

from llmux.protocol.errors import ModelLoadFailed
from llmux.registry import PhysicalModel, Registry
from llmux.residency.controller import ResidencyController
from llmux.residency.faults import redact_paths
from tests.unit.test_controller import Harness, settle


def with_specs(reference: Registry, **changes: dict[str, Any]) -> Registry:
    physical = dict(reference.physical)
    for mid, fields in changes.items():
        physical[mid] = msgspec.structs.replace(physical[mid], **fields)
    return Registry(reference.budget_gb, reference.models_dir, None, reference.limits, physical, reference.virtual)


async def test_a_failed_load_restores_the_models_it_evicted(reference: Registry) -> None:
    h = Harness(reference, **{"gpt-oss-20b": {"fail": True}})
    await h.use("cohere-transcribe", "qwen3.5-4b")
    with pytest.raises(ModelLoadFailed):
        await h.controller.acquire("gpt-oss-20b")  # 13 GB: evicts both to make room, then fails
    await settle()
    assert h.resident() == {"cohere-transcribe": "ready", "qwen3.5-4b": "ready"}
    lease = h.controller.try_acquire("qwen3.5-4b")  # served at once, no load needed
    assert lease is not None
    h.controller.release(lease)


async def test_a_broken_model_is_refused_fast_and_evicts_nothing_until_reset(reference: Registry) -> None:
    h = Harness(reference, **{"gpt-oss-20b": {"fail": True}})
    await h.use("qwen3.5-4b")
    with pytest.raises(ModelLoadFailed):
        await h.controller.acquire("gpt-oss-20b")
    await settle()
    loads = h.order.count("load gpt-oss-20b")
    unloads = h.order.count("unload qwen3.5-4b")
    for _ in range(3):
        with pytest.raises(ModelLoadFailed) as refused:
            await h.controller.acquire("gpt-oss-20b")
        assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 30
    assert h.order.count("load gpt-oss-20b") == loads and h.order.count("unload qwen3.5-4b") == unloads
    view = next(v for v in h.controller.status() if v.id == "gpt-oss-20b")
    assert view.broken and view.retry_in_s is not None
    h.args["gpt-oss-20b"] = {}  # the operator fixed it
    h.controller.reset("gpt-oss-20b")
    h.controller.release(await h.controller.acquire("gpt-oss-20b"))
    assert not next(v for v in h.controller.status() if v.id == "gpt-oss-20b").broken


async def test_the_backoff_expires_and_doubles_with_each_failure(reference: Registry) -> None:
    now = [0.0]
    h = Harness(reference, **{"qwen3.5-4b": {"fail": True}})
    h.controller = ResidencyController(reference, h.factory, offload=h.offload, clock=lambda: now[0])
    retries = []
    for _ in range(3):
        with pytest.raises(ModelLoadFailed) as failed:
            await h.controller.acquire("qwen3.5-4b")
        retries.append(failed.value.retry_after)
        now[0] += 1000.0  # past any backoff: the next request tries to load again
    assert retries == [30.0, 60.0, 120.0]
    assert h.order.count("load qwen3.5-4b") == 3


async def test_a_hung_load_times_out_others_keep_serving_and_its_late_result_is_unloaded(
    reference: Registry,
) -> None:
    registry = with_specs(reference, **{"qwen3.5-9b-fp8": {"load_timeout_s": 0.05}})
    h = Harness(registry)
    await h.use("cohere-transcribe", "qwen3.5-4b")
    h.gates["qwen3.5-9b-fp8"] = asyncio.Event()  # never set until the end: the load hangs
    started = time.monotonic()
    waiters = [asyncio.create_task(h.controller.acquire("qwen3.5-9b-fp8")) for _ in range(3)]
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert time.monotonic() - started < 5
    assert all(isinstance(r, ModelLoadFailed) and "did not finish within 0.05 s" in r.message for r in results)
    await settle()
    # The 4B it evicted is back; the ASR never left; both serve while the thread hangs.
    assert h.resident() == {"cohere-transcribe": "ready", "qwen3.5-4b": "ready"}
    for model in ("cohere-transcribe", "qwen3.5-4b"):
        h.controller.release(await asyncio.wait_for(h.controller.acquire(model), 5))
    view = next(v for v in h.controller.status() if v.id == "qwen3.5-9b-fp8")
    assert view.broken and view.abandoned_loads == 1 and view.state == "unloaded"
    h.gates["qwen3.5-9b-fp8"].set()  # the hung thread returns after all
    for _ in range(50):
        await asyncio.sleep(0)
        if "unload qwen3.5-9b-fp8" in h.order:
            break
    assert "unload qwen3.5-9b-fp8" in h.order  # what it loaded is dropped again
    assert next(v for v in h.controller.status() if v.id == "qwen3.5-9b-fp8").abandoned_loads == 0
    assert h.resident() == {"cohere-transcribe": "ready", "qwen3.5-4b": "ready"}


class Missing:
    def __init__(self, spec: PhysicalModel, _: Registry) -> None:
        self.spec = spec

    def load(self) -> float | None:
        open(f"/srv/secret-models/{self.spec.id}/ve.safetensors")  # noqa: SIM115 (it raises)
        return None

    def unload(self) -> None:
        pass


async def test_load_errors_name_the_file_not_the_server_directories(reference: Registry) -> None:
    controller = ResidencyController(reference, Missing)
    with pytest.raises(ModelLoadFailed) as failed:
        await controller.acquire("chatterbox")
    assert "ve.safetensors" in failed.value.message and "/srv" not in failed.value.message
    view = next(v for v in controller.status() if v.id == "chatterbox")
    assert view.last_error is not None and "ve.safetensors" in view.last_error and "/srv" not in view.last_error


def test_redaction_keeps_urls_and_file_names() -> None:
    assert redact_paths("No such file: '/a/b/c.gguf'") == "No such file: 'c.gguf'"
    assert redact_paths("see https://example.org/x/y") == "see https://example.org/x/y"


async def test_loads_run_in_daemon_threads_not_the_default_executor(reference: Registry) -> None:
    seen: list[threading.Thread] = []

    class Probe(Missing):
        def load(self) -> float | None:
            seen.append(threading.current_thread())
            return None

    controller = ResidencyController(reference, Probe)
    controller.release(await controller.acquire("qwen3.5-4b"))
    assert seen and seen[0].daemon and seen[0] is not threading.main_thread()
