"""The request path as a whole, through the real app: what is checked before a lease (a bad
image never loads a model), and the one canonical line every request leaves — answered,
refused or cancelled — which /metrics counts too."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from llmux.app import create_app
from llmux.engines.base import Prompted, TextJob
from llmux.engines.text import Item, completion_budget
from llmux.registry import ApiKeysFile, PhysicalModel, Registry
from tests.support.backends import InstantChat
from tests.support.server import serve, wait_for

KEY = "CHANGE-ME-open-webui-placeholder"
VISION_MODEL = "Qwen3.5-4B-Instruct"


class Endless(InstantChat):
    """Generates until its job is cancelled; counts loads."""

    loads: list[str] = []
    cancelled = threading.Event()

    def load(self) -> float | None:
        Endless.loads.append(self.spec.id)
        return super().load()

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        budget = completion_budget(job.params.max_tokens, 1, 1 << 20)
        yield Prompted(1, budget)
        try:
            for _ in range(budget):
                if cancel.wait(0.001):
                    break
                yield "tick "
        finally:  # stopped here, or closed by the worker that saw the flag first
            if cancel.is_set():
                Endless.cancelled.set()


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    return Endless(spec, registry)


@pytest.fixture()
def server(reference: Registry, keys: ApiKeysFile) -> Iterator[tuple[str, Any]]:
    Endless.loads.clear()
    Endless.cancelled.clear()
    app = create_app(reference, keys, factory=factory, keepalive_s=0.05)
    with serve(app) as url:
        yield url, app


def png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


BAD_IMAGES = {
    "not base64 of an image": "data:image/png;base64," + base64.b64encode(b"certainly not a png").decode(),
    "a truncated png": png()[:60],
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("url", BAD_IMAGES.values(), ids=BAD_IMAGES.keys())
def test_a_bad_image_is_a_400_and_loads_nothing(server: tuple[str, Any], stream: bool, url: str) -> None:
    base, app = server
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    body = {"model": VISION_MODEL, "stream": stream, "messages": [{"role": "user", "content": content}]}
    r = httpx.post(f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_image" and error["param"] == "messages[0].content[1].image_url"
    assert Endless.loads == [], "a model was loaded for a request that was refused"
    assert all(m.state == "unloaded" for m in app.state.services.controller.status())


def test_a_good_image_reaches_the_vision_model(server: tuple[str, Any]) -> None:
    base, _ = server
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": png()}}]
    body = {"model": VISION_MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": content}]}
    r = httpx.post(f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    assert Endless.loads == ["qwen3.5-4b"]  # the physical model behind it


def chat_completions(metrics: str, model: str, finish_reason: str) -> float:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "llmux_chat_completions_total" and sample.labels == {"model": model, "finish_reason": finish_reason}:
                return float(sample.value)
    return 0.0


def test_a_cancelled_stream_leaves_one_canonical_line_and_is_counted(server: tuple[str, Any]) -> None:
    base, _ = server
    body = {"model": "Qwen3.5-4B-Thinking", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"}) as response:
            request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if "tick" in line:
                    break  # hang up mid-generation
        wait_for(Endless.cancelled.is_set, what="the engine to see the cancel")
        wait_for(lambda: any(e.get("path") == "/v1/chat/completions" for e in logs), what="the request's line")
    lines = [e for e in logs if e["event"] == "request.done" and e.get("path") == "/v1/chat/completions"]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["request_id"] == request_id
    assert line["cancelled"] is True and line["client"] == "open-webui"
    assert line["model"] == "Qwen3.5-4B-Thinking" and line["completion_tokens"] >= 1
    metrics = httpx.get(f"{base}/metrics").text
    assert chat_completions(metrics, "Qwen3.5-4B-Thinking", "cancelled") == 1
