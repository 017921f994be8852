"""`llmux serve --config config` as a separate process: the reference deployment's model list
reaches the official openai client, keys are enforced, /health is open, SIGTERM is clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import ROOT
from tests.support.server import free_port, wait_for

pytestmark = pytest.mark.slow


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def reference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    data_dir = tmp_path_factory.mktemp("data")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmux", "serve", "--config", "config", "--port", str(port), "--log-json", "--allow-demo-keys",
         "--data-dir", str(data_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url) or proc.poll() is not None, timeout_s=60, what="llmux to start")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_openai_client_lists_the_16_virtual_models(reference_server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = reference_server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="CHANGE-ME-opencode-placeholder", max_retries=0)
    assert len(list(client.models.list())) == 16 + 1  # the requirements' 16, and the OCR model (issue 13)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="not-a-key", max_retries=0).models.list()
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_missing_weights_fail_the_request_cleanly_and_sigterm_exits_zero(reference_server: tuple[str, subprocess.Popen[str]]) -> None:
    url, proc = reference_server
    r = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": "Bearer CHANGE-ME-opencode-placeholder"},
        json={"model": "Qwen3.5-4B-Instruct", "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    # No weights on this machine: a clear 503, not a crash, and the server keeps serving.
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "model_load_failed"
    assert httpx.get(f"{url}/health").status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
