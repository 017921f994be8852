"""Real-time factors of the demo's speech models: audio seconds per wall second (higher is faster).

    python -m bench.audio_bench

In-process: the backend alone (hibari ``speak``; faster-whisper ``transcribe`` of decoded
audio). HTTP: a real ``llmux serve --config config/demo`` process on localhost; TTS includes
mp3 encoding and ASR includes upload and decoding. Each number is the median of REPEATS runs
after a warm-up; "x4" runs four transcriptions at once and counts the audio of all four.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from llmux.audio.decode import decode_audio
from llmux.audio.encode import encode_audio
from llmux.audio.text import split_sentences
from llmux.engines.base import SpeakOptions, TranscribeOptions
from llmux.engines.factory import create_engine
from llmux.registry import load_keys, load_models
from tests.support.server import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"
REPEATS = 3
TEXT = (
    "The quick brown fox jumps over the lazy dog. Speech recognition turns spoken words into text, "
    "and speech synthesis turns text back into sound. This paragraph is long enough to measure both "
    "directions with some care. A server that does both on one small machine must share it well. "
    "Every number in the table below is the median of three runs."
)


def _median_time(run: Callable[[], object]) -> float:
    run()  # warm-up
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def in_process() -> tuple[list[tuple[str, str, float, float]], np.ndarray]:
    registry = load_models(DEMO / "models.yaml")
    tts = create_engine(registry.physical["hibari"], registry)
    asr = create_engine(registry.physical["whisper-tiny-en"], registry)
    tts.load()
    asr.load()
    cancel = threading.Event()

    def speak() -> np.ndarray:
        parts = [a for piece in split_sentences(TEXT) for a in tts.speak(piece, "heart", SpeakOptions(), cancel)]
        return np.concatenate(parts)

    speech = speak()
    tts_s = speech.size / tts.sample_rate
    audio16k = decode_audio(encode_audio(speech, tts.sample_rate, "wav"))
    rows = [
        ("hibari", "in-process", tts_s, _median_time(speak)),
        ("whisper-tiny-en", "in-process", tts_s, _median_time(lambda: asr.transcribe(audio16k, TranscribeOptions(), cancel))),
    ]
    return rows, speech


def over_http(speech: np.ndarray) -> list[tuple[str, str, float, float]]:
    port = free_port()
    key = load_keys(DEMO / "api_keys.yaml").keys[0].key
    server = subprocess.Popen(
        [sys.executable, "-m", "llmux", "serve", "--config", str(DEMO), "--port", str(port), "--log-level", "warning",
         "--allow-demo-keys"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), 60, "llmux serve")
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300)
        mp3 = encode_audio(speech, 24_000, "mp3")
        audio_s = speech.size / 24_000

        def tts() -> None:
            r = client.post("/v1/audio/speech", json={"model": "hibari", "input": TEXT, "voice": "heart"})
            r.raise_for_status()

        def asr() -> None:
            r = client.post("/v1/audio/transcriptions", files={"file": ("a.mp3", mp3)}, data={"model": "whisper-tiny-en"})
            r.raise_for_status()

        def asr4() -> None:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda _: asr(), range(4)))

        return [
            ("hibari", "HTTP (mp3)", audio_s, _median_time(tts)),
            ("whisper-tiny-en", "HTTP (mp3 upload)", audio_s, _median_time(asr)),
            ("whisper-tiny-en", "HTTP x4 concurrent", 4 * audio_s, _median_time(asr4)),
        ]
    finally:
        server.terminate()
        server.wait(30)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def main() -> None:
    rows, speech = in_process()
    rows += over_http(speech)
    print(f"{'model':<16} {'path':<20} {'audio s':>8} {'wall s':>8} {'RTF (audio s / wall s)':>24}")
    for model, path, audio_s, wall in rows:
        print(f"{model:<16} {path:<20} {audio_s:>8.2f} {wall:>8.3f} {audio_s / wall:>24.1f}")


if __name__ == "__main__":
    main()
