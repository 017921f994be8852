"""Open WebUI 0.12 in a real (headless) browser against the demo: ``make webui``.

Not part of ``make test``: Open WebUI needs its own Python (<3.13) with its own torch (~2.9 GB) and
Chromium, so ``make webui`` installs them (clients/webui-venv, clients/browser) and runs this file.
The default ``pytest`` run skips this folder (``norecursedirs`` in pyproject.toml).

1. ``python -m llmux serve --config config/demo`` in its own process (JSON log to a file);
2. Open WebUI pointed at it, offline (no Ollama, no embedding download, no update check), with
   speech-to-text and text-to-speech going to llmux too;
3. ``clients/browser/chat.mjs`` opens the UI, picks ``smollm2``, sends a message, waits for the
   streamed answer, presses Read Aloud. Screenshots go to ``.webui-out/`` (printed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.support.server import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
KEY = "sk-llmux-demo-not-a-secret"
WEBUI = Path(os.environ.get("LLMUX_WEBUI_VENV", ROOT / "clients" / "webui-venv")) / "bin" / "open-webui"
SCRIPT = ROOT / "clients" / "browser" / "chat.mjs"
OUT = Path(os.environ.get("LLMUX_WEBUI_OUT", ROOT / ".webui-out"))


def up(url: str, process: subprocess.Popen[Any], log: Path) -> bool:
    assert process.poll() is None, f"exited {process.returncode}: {log.read_text()[-4000:]}"
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def stop(process: subprocess.Popen[Any], sink: IO[str]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    sink.close()


@pytest.fixture(scope="module")
def llmux(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    log = OUT / "llmux.log"
    OUT.mkdir(parents=True, exist_ok=True)
    sink = log.open("w")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmux", "serve", "--config", str(DEMO), "--port", str(port), "--log-json",
         "--allow-demo-keys"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: up(f"{url}/health", process, log), 90, "llmux serve to answer /health")
        yield url, log
    finally:
        stop(process, sink)


def webui_env(llmux_url: str, data: Path) -> dict[str, str]:
    """The README's Open WebUI settings as environment (they seed its config on first start),
    plus what keeps it offline and quick on a CPU."""
    v1 = f"{llmux_url}/v1"
    return {
        **os.environ,
        "DATA_DIR": str(data), "WEBUI_SECRET_KEY": "llmux-webui-test", "WEBUI_AUTH": "False",
        "OPENAI_API_BASE_URL": v1, "OPENAI_API_KEY": KEY, "ENABLE_OPENAI_API": "True",
        "ENABLE_OLLAMA_API": "False", "OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1", "ENABLE_VERSION_UPDATE_CHECK": "False",
        "ANONYMIZED_TELEMETRY": "False", "SCARF_NO_ANALYTICS": "true", "DO_NOT_TRACK": "true",
        # No local embedding model (it would be a Hugging Face download): retrieval would use
        # llmux's endpoint, and nothing here retrieves.
        "RAG_EMBEDDING_ENGINE": "openai", "RAG_OPENAI_API_BASE_URL": v1, "RAG_OPENAI_API_KEY": KEY,
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "False", "RAG_RERANKING_MODEL_AUTO_UPDATE": "False",
        "WHISPER_MODEL_AUTO_UPDATE": "False",
        # Background tasks would each be another SmolLM2 generation on a shared CPU.
        "ENABLE_TITLE_GENERATION": "False", "ENABLE_FOLLOW_UP_GENERATION": "False",
        "ENABLE_TAGS_GENERATION": "False", "ENABLE_AUTOCOMPLETE_GENERATION": "False",
        "ENABLE_SEARCH_QUERY_GENERATION": "False", "ENABLE_RETRIEVAL_QUERY_GENERATION": "False",
        "AUDIO_STT_ENGINE": "openai", "AUDIO_STT_OPENAI_API_BASE_URL": v1, "AUDIO_STT_OPENAI_API_KEY": KEY,
        "AUDIO_STT_MODEL": "whisper-tiny-en",
        "AUDIO_TTS_ENGINE": "openai", "AUDIO_TTS_OPENAI_API_BASE_URL": v1, "AUDIO_TTS_OPENAI_API_KEY": KEY,
        "AUDIO_TTS_MODEL": "hibari", "AUDIO_TTS_VOICE": "heart",
    }


@pytest.fixture(scope="module")
def webui(llmux: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert WEBUI.exists(), f"{WEBUI} is missing: run `make webui`"
    home = tmp_path_factory.mktemp("webui")
    log = OUT / "open-webui.log"
    sink = log.open("w")
    port = free_port()
    process = subprocess.Popen([str(WEBUI), "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=home,
                               env=webui_env(llmux[0], home / "data"), stdout=sink, stderr=subprocess.STDOUT,
                               text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        # Its first start imports torch and runs its migrations: minutes on a shared CPU.
        wait_for(lambda: up(f"{url}/health", process, log), 600, "Open WebUI to answer /health")
        yield url
    finally:
        stop(process, sink)


def requests_done(log: Path) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == "request.done"]


def test_a_chat_in_open_webui_streams_an_answer_and_reads_it_aloud(llmux: tuple[str, Path], webui: str) -> None:
    node = shutil.which("node")
    assert node, "node is missing"
    shots = OUT / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    args = {"url": webui, "model": "smollm2", "message": "Say hello in one short sentence.", "out": str(shots),
            "readAloud": True, "timeoutMs": 480000}
    done = subprocess.run([node, str(SCRIPT), json.dumps(args)], cwd=SCRIPT.parent, capture_output=True, text=True,
                          timeout=900)
    print(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print("screenshots:", *result["screenshots"], sep="\n  ")
    print("answer:", result["answer"], "| toasts:", result["toasts"], "| steps:", result["steps"])
    assert "error" not in result, result
    assert result["answer"], result
    # The one expected toast is the success notice "You're now logged in." (WEBUI_AUTH=False);
    # the first cut's defect came as an error toast ("The model 'smollm2' does not support tool calling.").
    assert not [t for t in result["toasts"] if t["type"] != "success"], result["toasts"]
    assert [r["status"] for r in served(llmux[1], "/v1/chat/completions")][-1:] == [200]
    assert result["readAloud"] and result["readAloud"]["status"] == 200, result
    # The canonical line is written when the response ends, which may trail the browser's view.
    wait_for(lambda: bool(served(llmux[1], "/v1/audio/speech")), 30, "llmux to log /v1/audio/speech")
    assert [r["status"] for r in served(llmux[1], "/v1/audio/speech")][-1:] == [200]


def served(log: Path, path: str) -> list[dict[str, Any]]:
    return [r for r in requests_done(log) if r.get("path") == path]
