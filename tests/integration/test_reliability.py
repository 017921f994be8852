"""Honest health, admission and clients that go away (issue 10), through the real app."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import numpy as np
import pytest
import structlog
import structlog.testing

from llmux.app import create_app
from llmux.registry import ApiKeysFile, PhysicalModel, Registry
from tests.support import slow_engines as slow
from tests.support.audio import encode
from tests.support.backends import InstantChat
from tests.support.server import serve, wait_for


KEY = "CHANGE-ME-open-webui-placeholder"


class Broken(InstantChat):
    def load(self) -> float | None:
        raise FileNotFoundError(2, "No such file or directory", f"/srv/llmux/models/{self.spec.id}/model.gguf")


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    return Broken(spec, registry) if spec.id == "qwen3.5-9b-fp8" else InstantChat(spec, registry)


def client(app: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://llmux", headers={"Authorization": f"Bearer {KEY}"}
    )


def chat_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.asyncio
async def test_health_is_degraded_with_reasons_after_a_failed_load(reference: Registry, keys: ApiKeysFile) -> None:
    app = create_app(reference, keys, factory=factory)
    async with client(app) as http:
        assert (await http.get("/health")).json()["status"] == "ok"
        r = await http.post("/v1/chat/completions", json=chat_body("Qwen3.5-9B-FP8-Thinking"))
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        assert "model.gguf" in r.json()["error"]["message"] and "/srv" not in r.text
        health = await http.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "degraded"
        assert any("qwen3.5-9b-fp8" in reason and "broken" in reason for reason in body["reasons"])
        assert "/srv" not in health.text
        assert (await http.get("/health/ready")).status_code == 200  # degraded, still ready


@pytest.mark.asyncio
async def test_health_and_readiness_say_shutting_down_with_503(reference: Registry, keys: ApiKeysFile) -> None:
    app = create_app(reference, keys, factory=factory)
    async with client(app) as http:
        app.state.services.controller.begin_shutdown()
        health = await http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "shutting_down"
        ready = await http.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        r = await http.post("/v1/chat/completions", json=chat_body("Qwen3.5-4B-Instruct"))
        assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"


@pytest.mark.asyncio
async def test_the_shutting_down_503_says_when_to_retry(reference: Registry, keys: ApiKeysFile) -> None:
    app = create_app(reference, keys, factory=factory)
    async with client(app) as http:
        app.state.services.controller.begin_shutdown()
        ready = await http.get("/health/ready")
        assert ready.status_code == 503 and int(ready.headers["Retry-After"]) >= 1
        for body in (chat_body("Qwen3.5-4B-Instruct"), chat_body("Qwen3.5-4B-Instruct", stream=True)):
            r = await http.post("/v1/chat/completions", json=body)
            assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
            assert int(r.headers["Retry-After"]) >= 1


# ---- clients that go away -----------------------------------------------------------------------


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    app = create_app(slow.registry(tmp_path), slow.KEYS, factory=slow.factory)
    with serve(app) as url:
        yield url, app


def leases(app: Any) -> int:
    return sum(m.leases for m in app.state.services.controller.status())


def leave_after(url: str, path: str, body: bytes, content_type: str, seconds: float, kind: str) -> None:
    """Send a request, wait until its engine works on it, read what comes for ``seconds`` more
    (a speech's first bytes may), hang up."""
    ran = slow.RAN[kind]
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: llmux\r\nAuthorization: Bearer {slow.KEY}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        wait_for(lambda: slow.RAN[kind] > ran, 20, f"the {kind} to start")
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                assert b"0\r\n\r\n" not in sock.recv(65536), "answered in full before the client left"


def multipart(fields: dict[str, str], file: bytes) -> tuple[bytes, str]:
    boundary = "llmuxboundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
                 "Content-Type: audio/wav\r\n\r\n")
    return "".join(parts).encode() + file + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_non_streamed_requests_are_cancelled_when_the_client_goes_away(slow_server: tuple[str, Any]) -> None:
    url, app = slow_server
    before, ran = dict(slow.CANCELLED), dict(slow.RAN)
    chat = json.dumps(chat_body("talk")).encode()
    leave_after(url, "/v1/chat/completions", chat, "application/json", 0.5, "chat")
    speech = json.dumps({"model": "mouth", "input": "x" * 4000, "response_format": "wav"}).encode()
    leave_after(url, "/v1/audio/speech", speech, "application/json", 0.5, "speech")
    form, kind = multipart({"model": "ears"}, encode(np.zeros(16000 * 600, dtype=np.float32), 16000, "wav", "pcm_s16le"))
    leave_after(url, "/v1/audio/transcriptions", form, kind, 0.5, "transcribe")
    for what in ("chat", "speech", "transcribe"):
        wait_for(lambda what=what: slow.CANCELLED[what] > before.get(what, 0), 10, f"the {what} to be cancelled")
    wait_for(lambda: leases(app) == 0, 10, "every lease back")
    # The 4,000 characters are 14 sentence groups: none after the cancelled one reaches the engine.
    assert slow.RAN["speech"] - ran.get("speech", 0) == 1
    started = time.monotonic()
    r = httpx.post(f"{url}/v1/chat/completions", json=chat_body("talk", max_tokens=1),
                   headers={"Authorization": f"Bearer {slow.KEY}"}, timeout=30)
    assert r.status_code == 200 and time.monotonic() - started < 5


def test_a_stream_whose_client_stops_reading_ends_and_releases_its_lease(tmp_path: Path) -> None:
    app = create_app(slow.registry(tmp_path, "limits: {stall_timeout_s: 0.5}\n"), slow.KEYS, factory=slow.factory)
    lines: list[dict[str, Any]] = []
    with serve(app) as url, structlog.testing.capture_logs() as logs:
        host, port = url.removeprefix("http://").split(":")
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, int(port)))
            body = json.dumps(chat_body("fat", stream=True)).encode()
            sock.sendall(
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: llmux\r\nAuthorization: Bearer {slow.KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            )
            assert sock.recv(16).startswith(b"HTTP/1.1 200")
            wait_for(lambda: leases(app) == 1, 10, "the stream to run")
            # Connected, never reading again: the server's send blocks once the buffers are full.
            wait_for(lambda: leases(app) == 0, 20, "the stalled stream to give its lease back")
            r = httpx.post(f"{url}/v1/chat/completions", json=chat_body("talk", max_tokens=1),
                           headers={"Authorization": f"Bearer {slow.KEY}"}, timeout=30)
            assert r.status_code == 200
        lines = [e for e in logs if e.get("event") == "request.done" and e.get("stream")]
    assert lines and lines[0]["stalled"] is True and lines[0]["cancelled"] is True


# ---- admission ----------------------------------------------------------------------------------


def test_beyond_the_queue_bound_requests_get_429_and_health_counts_the_waiting(tmp_path: Path) -> None:
    import msgspec

    reg = slow.registry(tmp_path)
    physical = {**reg.physical, "talk": msgspec.structs.replace(reg.physical["talk"], max_queue=4)}
    app = create_app(Registry(reg.budget_gb, reg.models_dir, None, reg.limits, physical, reg.virtual),
                     slow.KEYS, factory=slow.factory)
    headers = {"Authorization": f"Bearer {slow.KEY}"}
    with serve(app) as url:
        results: list[httpx.Response] = []

        def one() -> None:
            results.append(httpx.post(f"{url}/v1/chat/completions", json=chat_body("talk", max_tokens=400),
                                      headers=headers, timeout=60))

        workers = [threading.Thread(target=one) for _ in range(4)]
        for w in workers:
            w.start()
        wait_for(lambda: leases(app) == 4, 10, "four requests admitted")
        depth = httpx.get(f"{url}/health").json()["queue_depth"]
        assert depth == 3  # one generates, three wait for the engine's turn
        refused = httpx.post(f"{url}/v1/chat/completions", json=chat_body("talk"), headers=headers)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        streamed = httpx.post(f"{url}/v1/chat/completions", json=chat_body("talk", stream=True), headers=headers)
        assert streamed.status_code == 429  # decided before the stream's headers
        for w in workers:
            w.join(60)
        assert [r.status_code for r in results] == [200] * 4
        assert httpx.get(f"{url}/health").json()["queue_depth"] == 0


def test_beyond_the_global_queue_bound_requests_for_any_model_get_429(tmp_path: Path) -> None:
    # limits.max_queue counts every model's running and waiting requests together: with three
    # chats for one model admitted, a request for another model is refused although its own
    # per-model bound (max_queue: 32) is far away.
    app = create_app(slow.registry(tmp_path, "limits: {max_queue: 3}\n"), slow.KEYS, factory=slow.factory)
    headers = {"Authorization": f"Bearer {slow.KEY}"}
    with serve(app) as url:
        results: list[httpx.Response] = []

        def one() -> None:
            results.append(httpx.post(f"{url}/v1/chat/completions", json=chat_body("talk", max_tokens=2000),
                                      headers=headers, timeout=60))

        # 2,000 one-millisecond tokens each: the three stay admitted while the refusals are sent.
        workers = [threading.Thread(target=one) for _ in range(3)]
        for w in workers:
            w.start()
        wait_for(lambda: leases(app) == 3, 10, "three requests admitted")
        for model in ("talk", "fat"):
            refused = httpx.post(f"{url}/v1/chat/completions", json=chat_body(model), headers=headers)
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "2", refused.text
            assert "limits.max_queue" in refused.json()["error"]["message"]
            assert refused.json()["error"]["type"] == "rate_limit_error"
            streamed = httpx.post(f"{url}/v1/chat/completions", json=chat_body(model, stream=True), headers=headers)
            assert streamed.status_code == 429 and streamed.headers["Retry-After"] == "2"  # before the headers
            assert "text/event-stream" not in streamed.headers.get("content-type", "")
        for w in workers:
            w.join(60)
        assert [r.status_code for r in results] == [200] * 3
        assert httpx.get(f"{url}/health").json()["queue_depth"] == 0


def test_a_request_past_its_deadline_is_a_504_and_releases_its_lease(tmp_path: Path) -> None:
    app = create_app(slow.registry(tmp_path, "limits: {request_timeout_s: 0.5}\n"), slow.KEYS, factory=slow.factory)
    with serve(app) as url:
        started = time.monotonic()
        r = httpx.post(f"{url}/v1/chat/completions", json=chat_body("talk"),  # never ends on its own
                       headers={"Authorization": f"Bearer {slow.KEY}"}, timeout=30)
        assert r.status_code == 504 and r.json()["error"]["code"] == "request_timeout", r.text
        assert time.monotonic() - started < 5
        wait_for(lambda: leases(app) == 0, 10, "the lease back")


def test_a_runtime_that_takes_long_to_set_up_does_not_stall_other_requests(
    reference: Registry, keys: ApiKeysFile
) -> None:
    """The first engine of a runtime imports it (torch and transformers take seconds): that
    happens off the event loop, so ``/health`` and the rest of the API keep answering meanwhile."""
    building, release = threading.Event(), threading.Event()

    def slow_factory(spec: PhysicalModel, registry: Registry) -> Any:
        if spec.id == "qwen3.5-9b-fp8":
            building.set()
            release.wait(60)  # on the event loop this would freeze the server until then
        return InstantChat(spec, registry)

    app = create_app(reference, keys, factory=slow_factory)
    with serve(app) as url:
        headers = {"Authorization": f"Bearer {KEY}"}
        answer: dict[str, Any] = {}
        ask = threading.Thread(target=lambda: answer.update(httpx.post(
            f"{url}/v1/chat/completions", json=chat_body("Qwen3.5-9B-FP8-Instruct"), headers=headers, timeout=120).json()))
        ask.start()
        try:
            assert building.wait(30)
            assert httpx.get(f"{url}/health", timeout=5).status_code in (200, 503)
            listed = httpx.get(f"{url}/v1/models", headers=headers, timeout=5)
            assert listed.status_code == 200 and listed.json()["data"]
        finally:
            release.set()
            ask.join(60)
        assert answer["choices"][0]["message"]["content"]
