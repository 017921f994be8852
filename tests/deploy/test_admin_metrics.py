"""The operations API (/v1/admin) and /metrics, through the real app over ASGI with the instant
test backends: who may call what, what each route changes, what the GPU-versus-CPU test reports,
and that /metrics counts exactly what the test sent."""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest
from litestar import Litestar
from prometheus_client.parser import text_string_to_metric_families

from llmux.app import create_app
from llmux.engines.base import ASR_SAMPLE_RATE, SpeakOptions, TranscribeOptions, Transcript, Voice
from llmux.registry import ApiKey, ApiKeysFile, ModelType, PhysicalModel, Registry, load_models
from tests.support.backends import InstantChat

pytestmark = pytest.mark.asyncio

USER, ADMIN = "sk-user-0123456789abcdef", "sk-admin-0123456789abcdef"
KEYS = ApiKeysFile((ApiKey(name="webui", key=USER), ApiKey(name="ops", key=ADMIN, role="admin")))

MODELS = """
budget_gb: 16
physical:
  qwen:
    {type: llm, backend: transformers, family: qwen3.5, weights: qwen, vram_gb: 9}
  gguf:
    {type: llm, backend: llamacpp, family: qwen3.5, weights: gguf/m.gguf, vram_gb: 9}
  cpu-llm:
    {type: llm, backend: transformers, family: chatml, weights: cpu, vram_gb: 1, options: {device: cpu}}
  voice:
    {type: tts, backend: hibari, weights: hibari, vram_gb: 1}
  ears:
    {type: asr, backend: transformers, weights: asr, vram_gb: 4}
  mouth:
    {type: tts, backend: chatterbox, weights: tts, vram_gb: 2, options: {variant: multilingual}}
virtual:
  Qwen-Thinking: {physical: qwen, behaviour: {thinking: true}}
  Qwen-Instruct: {physical: qwen, behaviour: {thinking: false}}
  Gguf-Instruct: {physical: gguf, behaviour: {thinking: false}}
  Cpu-Chat: {physical: cpu-llm}
  Ears: {physical: ears}
  Mouth: {physical: mouth}
"""


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    (tmp_path / "models.yaml").write_text(textwrap.dedent(MODELS))
    return load_models(tmp_path / "models.yaml")


class Built:
    """Every backend the app builds, with the spec it was built from."""

    def __init__(self) -> None:
        self.specs: list[PhysicalModel] = []

    def __call__(self, spec: PhysicalModel, registry: Registry) -> Any:
        self.specs.append(spec)
        return {ModelType.LLM: InstantChat, ModelType.ASR: Ears, ModelType.TTS: Mouth}[spec.type](spec, registry)


class Ears:
    """An ASR backend that records what it was asked to transcribe."""

    heard: list[tuple[int, str]] = []

    def __init__(self, spec: PhysicalModel, registry: Registry) -> None:
        self.spec = spec

    def load(self) -> float | None:
        return None

    def unload(self) -> None:
        pass

    def transcribe(self, audio: Any, options: TranscribeOptions, cancel: threading.Event) -> Transcript:
        assert audio.dtype == np.float32 and audio.ndim == 1
        Ears.heard.append((len(audio), options.language))
        return Transcript(text="hm", language=options.language, duration=len(audio) / ASR_SAMPLE_RATE)


class Mouth:
    """A TTS backend: a tenth of a second of silence per character."""

    sample_rate = 24_000

    def __init__(self, spec: PhysicalModel, registry: Registry) -> None:
        self.spec = spec

    def load(self) -> float | None:
        return None

    def unload(self) -> None:
        pass

    def voices(self) -> list[Voice]:
        return [Voice("anna", "Anna")]

    def languages(self) -> tuple[str, ...]:
        return ()

    def speak(self, text: str, voice: str, options: SpeakOptions, cancel: threading.Event) -> Iterator[Any]:
        assert voice == "anna"
        for word in text.split():
            yield np.zeros(len(word) * self.sample_rate // 10, dtype=np.float32)


@pytest.fixture
def built() -> Built:
    return Built()


def make_app(registry: Registry, built: Built, gpu: bool = True) -> Litestar:
    return create_app(registry, KEYS, factory=built, gpu_probe=lambda: gpu)


@pytest.fixture
def app(registry: Registry, built: Built) -> Litestar:
    return make_app(registry, built)


def client(app: Litestar, key: str | None = ADMIN) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://llmux", headers=headers)


ROUTES = [
    ("GET", "/v1/admin/models", None),
    ("POST", "/v1/admin/models/qwen/load", None),
    ("POST", "/v1/admin/models/qwen/unload", None),
    ("POST", "/v1/admin/models/qwen/pin", None),
    ("POST", "/v1/admin/models/qwen/unpin", None),
    ("POST", "/v1/admin/speedtest", {"model": "qwen"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_admin_routes_refuse_user_keys_and_missing_keys(app: Litestar, method: str, path: str, body: Any) -> None:
    async with client(app, USER) as user, client(app, None) as anonymous, client(app, "sk-wrong-0123456789") as wrong:
        forbidden = await user.request(method, path, json=body)
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["type"] == "permission_error"
        for outsider in (anonymous, wrong):
            response = await outsider.request(method, path, json=body)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
    assert app.state.services.controller.status()[0].state == "unloaded"  # nothing happened


async def test_list_load_pin_unpin_unload(app: Litestar) -> None:
    async with client(app) as admin:
        listed = (await admin.get("/v1/admin/models")).json()
        assert listed["budget_gb"] == 16 and listed["used_gb"] == 0
        assert [m["id"] for m in listed["models"]] == ["qwen", "gguf", "cpu-llm", "voice", "ears", "mouth"]
        qwen = listed["models"][0]
        assert qwen["state"] == "unloaded" and qwen["virtual"] == ["Qwen-Thinking", "Qwen-Instruct"]
        assert qwen["estimate_gb"] == 9 and qwen["leases"] == 0 and qwen["waiting"] == 0

        loaded = (await admin.post("/v1/admin/models/Qwen-Instruct/load")).json()  # a virtual name
        assert loaded["id"] == "qwen" and loaded["state"] == "ready" and loaded["loads"] == 1
        assert (await admin.post("/v1/admin/models/qwen/pin")).json()["pinned"] is True
        assert (await admin.get("/v1/admin/models")).json()["used_gb"] == 9
        assert (await admin.post("/v1/admin/models/qwen/unpin")).json()["pinned"] is False
        unloaded = (await admin.post("/v1/admin/models/qwen/unload")).json()
        assert unloaded["state"] == "unloaded"
        missing = await admin.post("/v1/admin/models/nope/load")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


async def test_speedtest_without_a_gpu_says_so(registry: Registry, built: Built) -> None:
    async with client(make_app(registry, built, gpu=False)) as admin:
        response = await admin.post("/v1/admin/speedtest", json={"model": "qwen"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "no_gpu" and "No GPU is present on this host" in error["message"]
    assert built.specs == []  # nothing was loaded


@pytest.mark.parametrize(("model", "override"), [("Qwen-Thinking", {"device": "cpu"}), ("gguf", {"n_gpu_layers": 0})])
async def test_speedtest_runs_the_same_inference_on_the_resident_model_and_a_cpu_copy(
    app: Litestar, built: Built, model: str, override: dict[str, Any]
) -> None:
    async with client(app) as admin:
        response = await admin.post("/v1/admin/speedtest", json={"model": model, "max_tokens": 16})
    assert response.status_code == 200, response.text
    report = response.json()
    physical = (
        app.state.services.registry.resolve(model)[1]
        if model in app.state.services.registry.virtual
        else app.state.services.registry.physical[model]
    )
    assert report["model"] == physical.id and report["type"] == "llm"
    gpu, cpu = report["gpu"], report["cpu"]
    assert (gpu["device"], cpu["device"]) == ("gpu", "cpu")
    assert gpu["unit"] == cpu["unit"] == "tokens" and gpu["work"] == cpu["work"] > 0
    assert report["speedup"] == pytest.approx(gpu["rate"] / cpu["rate"], rel=0.05, abs=0.01)
    assert report["passed"] == (report["speedup"] >= report["required"] == 5.0)
    # first the resident (GPU) backend from the spec as configured, then the CPU copy
    assert [s.options for s in built.specs] == [physical.options, {**physical.options, **override}]
    assert app.state.services.controller.status()[0 if physical.id == "qwen" else 1].state == "ready"


@pytest.mark.parametrize(
    ("model", "says"), [("Cpu-Chat", "configured to run on the CPU"), ("voice", "has no GPU mode")]
)
async def test_speedtest_refuses_what_it_cannot_compare(app: Litestar, built: Built, model: str, says: str) -> None:
    async with client(app) as admin:
        response = await admin.post("/v1/admin/speedtest", json={"model": model})
    assert response.status_code == 400 and says in response.json()["error"]["message"]
    assert built.specs == []


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def test_metrics_count_what_was_sent(app: Litestar) -> None:
    chat = {"model": "Qwen-Instruct", "messages": [{"role": "user", "content": "one two three"}]}
    async with client(app, USER) as user:
        usages = []
        for _ in range(3):
            response = await user.post("/v1/chat/completions", json=chat)
            assert response.status_code == 200
            usages.append(response.json()["usage"])
        assert (await user.get("/v1/models")).status_code == 200
        assert (await user.post("/v1/chat/completions", json={**chat, "model": "nope"})).status_code == 404
        metrics = await user.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    m = scrape(metrics.text)
    route = (("method", "POST"), ("route", "/v1/chat/completions"))
    assert m[("llmux_http_requests_total", (*route[:1], ("route", "/v1/chat/completions"), ("status", "200")))] == 3
    assert m[("llmux_http_requests_total", (*route[:1], ("route", "/v1/chat/completions"), ("status", "404")))] == 1
    assert m[("llmux_http_requests_total", (("method", "GET"), ("route", "/v1/models"), ("status", "200")))] == 1
    assert m[("llmux_http_request_duration_seconds_count", route)] == 4
    assert not any(k[0] == "llmux_http_requests_total" and ("route", "/metrics") in k[1] for k in m)
    tokens = lambda kind: m[("llmux_tokens_total", (("kind", kind), ("model", "Qwen-Instruct")))]  # noqa: E731
    assert tokens("prompt") == sum(u["prompt_tokens"] for u in usages)
    assert tokens("completion") == sum(u["completion_tokens"] for u in usages)
    assert m[("llmux_chat_completions_total", (("finish_reason", "stop"), ("model", "Qwen-Instruct")))] == 3
    # residency: one load of qwen, resident and ready, its VRAM counted against the budget
    assert m[("llmux_model_load_duration_seconds_count", (("model", "qwen"),))] == 1
    assert m[("llmux_model_loads_total", (("model", "qwen"),))] == 1
    assert m[("llmux_swaps_total", ())] == 1
    assert m[("llmux_model_state", (("model", "qwen"), ("state", "ready")))] == 1
    assert m[("llmux_model_state", (("model", "gguf"), ("state", "unloaded")))] == 1
    assert m[("llmux_model_resident_vram_gb", (("model", "qwen"),))] == 9
    assert m[("llmux_model_resident_vram_gb", (("model", "gguf"),))] == 0
    assert m[("llmux_vram_used_gb", ())] == 9 and m[("llmux_vram_budget_gb", ())] == 16
    assert m[("llmux_queue_depth", ())] == 0


async def test_metrics_count_evictions(app: Litestar) -> None:
    async with client(app) as admin:
        await admin.post("/v1/admin/models/qwen/load")
        await admin.post("/v1/admin/models/gguf/load")  # one LLM at a time: qwen goes
        m = scrape((await admin.get("/metrics")).text)
    assert m[("llmux_model_evictions_total", (("model", "qwen"),))] == 1
    assert m[("llmux_model_load_duration_seconds_count", (("model", "gguf"),))] == 1
    assert m[("llmux_swaps_total", ())] == 2
    # switch phases, measured per model: both loads, qwen's drain (idle: 0 s) and unload
    phase = lambda model, name: (("model", model), ("phase", name))  # noqa: E731
    assert m[("llmux_switch_phase_seconds_count", phase("qwen", "load"))] == 1
    assert m[("llmux_switch_phase_seconds_count", phase("gguf", "load"))] == 1
    assert m[("llmux_switch_phase_seconds_count", phase("qwen", "drain"))] == 1
    assert m[("llmux_switch_phase_seconds_count", phase("qwen", "unload"))] == 1
    assert m[("llmux_switch_cost_seconds", phase("qwen", "load"))] >= 0
    assert ("llmux_switch_phase_seconds_count", phase("gguf", "unload")) not in m


async def test_speedtest_of_speech_models_measures_audio_seconds(app: Litestar, built: Built) -> None:
    Ears.heard.clear()
    async with client(app) as admin:
        asr = (await admin.post("/v1/admin/speedtest", json={"model": "Ears", "audio_s": 3})).json()
        tts = (await admin.post("/v1/admin/speedtest", json={"model": "mouth"})).json()
    assert asr["type"] == "asr" and asr["gpu"]["unit"] == asr["cpu"]["unit"] == "audio_s"
    assert asr["gpu"]["work"] == asr["cpu"]["work"] == 3
    # per device: a one-second warm-up, then the timed three seconds
    assert Ears.heard == [(16_000, "en"), (48_000, "en")] * 2
    assert tts["type"] == "tts" and tts["gpu"]["unit"] == "audio_s"
    assert tts["gpu"]["work"] == tts["cpu"]["work"] > 0
    assert [s.options for s in built.specs] == [
        {},
        {"device": "cpu"},
        {"variant": "multilingual"},
        {"variant": "multilingual", "device": "cpu"},
    ]


async def test_metrics_include_the_process(app: Litestar) -> None:
    async with client(app, None) as anonymous:  # open, like /health
        m = scrape((await anonymous.get("/metrics")).text)
    assert m[("process_resident_memory_bytes", ())] > 0
    assert any(name == "python_info" for name, _ in m)
