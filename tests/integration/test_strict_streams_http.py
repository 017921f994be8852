"""Streams strict clients accept, over real HTTP: keep-alives while a long prompt is evaluated
(after the headers and the first chunk, before the first token), and a failure mid-stream that
still ends with a finish_reason, usage and [DONE]."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmux.app import create_app
from llmux.engines.base import Prompted, TextJob
from llmux.engines.text import Item
from llmux.registry import ApiKeysFile, PhysicalModel, Registry
from tests.support.backends import InstantChat
from tests.support.server import serve
from tests.support.strict import assert_strict, sse_events

KEY = "CHANGE-ME-open-webui-placeholder"
HI = [{"role": "user", "content": "hi"}]


class LongPrefill(InstantChat):
    """Evaluates its prompt until the test has seen a keep-alive."""

    prefilled = threading.Event()

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        assert LongPrefill.prefilled.wait(10), "no keep-alive arrived during the prefill"
        yield from super().generate(job, cancel)


class FailsMidway(InstantChat):
    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        yield Prompted(3, 100)
        yield "Hello "
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    engines = {"qwen3.5-4b": LongPrefill, "qwen3.5-9b-fp8": FailsMidway}
    return engines.get(spec.id, InstantChat)(spec, registry)


@pytest.fixture(scope="module")
def server(reference: Registry, keys: ApiKeysFile) -> Iterator[str]:
    app = create_app(reference, keys, factory=factory, keepalive_s=0.05)
    with serve(app) as url:
        yield url


def stream(server: str, body: dict[str, Any]) -> Iterator[bytes]:
    with httpx.stream("POST", f"{server}/v1/chat/completions", json={**body, "stream": True},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as response:
        assert response.status_code == 200
        yield from response.iter_raw()


def test_keepalives_flow_during_a_long_prefill(server: str) -> None:
    # Load the model first: the keep-alives under test are the ones after the first chunk.
    LongPrefill.prefilled.set()
    assert_strict(sse_events(b"".join(stream(server, {"model": "Qwen3.5-4B-Instruct", "messages": HI})).decode()))
    LongPrefill.prefilled.clear()
    seen = b""
    for piece in stream(server, {"model": "Qwen3.5-4B-Instruct", "messages": HI,
                                 "stream_options": {"include_usage": True}}):
        seen += piece
        if b'"role":"assistant"' in seen and seen.rstrip().endswith(b": keep-alive"):
            LongPrefill.prefilled.set()
    body = seen.decode()
    assert body.index('"role":"assistant"') < body.index(": keep-alive") < body.index("hi")
    assert_strict(sse_events(body))


def test_a_failure_mid_stream_still_ends_with_a_finish(server: str) -> None:
    body = b"".join(stream(server, {"model": "Qwen3.5-9B-FP8-Instruct", "messages": HI,
                                     "stream_options": {"include_usage": True}})).decode()
    events = sse_events(body)
    assert_strict(events)
    (error,) = [e for e in events[:-1] if "error" in e]
    assert error["error"]["code"] == "generation_failed" and "illegal memory access" in error["error"]["message"]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices"))
    assert text == "Hello"
    assert events[-2]["usage"]["completion_tokens"] == 1
    assert events.index(error) < next(i for i, e in enumerate(events[:-1]) if e.get("choices") and e["choices"][0]["finish_reason"])
