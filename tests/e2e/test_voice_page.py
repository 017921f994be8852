"""The /voice page in a real (headless) browser against the demo: ``make voice-page``.

Not part of ``make test`` (it needs Debian's Chromium and playwright-core from npm, which
``make voice-page`` installs). Chromium's fake microphone plays a WAV of a question spoken by the
demo TTS; ``clients/browser/voice.mjs`` connects the page (key as the browser subprotocol), talks
hands-free or push-to-talk, and reports what the page showed and how much audio it played.
The screenshot goes to ``.webui-out/voice-<mode>/`` (printed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from llmux.audio.decode import decode_audio
from llmux.audio.encode import encode_audio
from tests.support.http import DEMO_KEY, demo_app, words
from tests.support.server import serve

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "clients" / "browser" / "voice.mjs"
OUT = Path(os.environ.get("LLMUX_WEBUI_OUT", ROOT / ".webui-out"))
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    if not shutil.which("node") or not (SCRIPT.parent / "node_modules" / "playwright-core").exists():
        pytest.skip("make voice-page installs playwright-core and Chromium")
    with serve(demo_app()) as base:
        yield base


def question_wav(url: str, path: Path) -> Path:
    body = {"model": "hibari", "input": QUESTION, "voice": "heart", "response_format": "wav"}
    spoken = httpx.post(
        f"{url}/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {DEMO_KEY}"}, timeout=120
    )
    pcm = decode_audio(spoken.content, 48_000)
    quiet = np.zeros(3 * 48_000, np.float32)  # the socket opens while the file starts playing
    path.write_bytes(encode_audio(np.concatenate([quiet, pcm, quiet, quiet]), 48_000, "wav"))
    return path


@pytest.mark.parametrize("mode", ["vad", "ptt"])
def test_talking_to_the_voice_page(url: str, mode: str, tmp_path: Path) -> None:
    wav = question_wav(url, tmp_path / "question.wav")
    args = {
        "url": url,
        "key": DEMO_KEY,
        "wav": str(wav),
        "mode": mode,
        "out": str(OUT / f"voice-{mode}"),
        "holdMs": 7000,
        "maxTokens": 40,
    }
    run = subprocess.run(
        ["node", str(SCRIPT), json.dumps(args)], capture_output=True, text=True, timeout=400, check=False
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=1))
    assert not result["errors"], result["errors"]
    assert words(result["user"]) == words(QUESTION)
    assert result["assistant"].strip() and result["played"] > 0.5
