"""Voice latency on the demo: end of the user's speech → first audio byte of the answer.

    python -m bench.voice_latency [--turns 3] [--silence-ms 500]

A real ``llmux serve --config config/demo`` process on localhost; a client streams a question
spoken by the demo TTS into ``/v1/realtime`` at real-time pace (100 ms per append, as a
microphone would), then silence. Times are measured from the moment the last sample of speech was
sent, to: the server's ``speech_stopped`` (VAD; it waits ``silence_duration_ms`` of quiet by
design), the transcript (Whisper tiny.en), the first text of the answer (SmolLM2) and the first
``response.audio.delta`` (hibari). One warm-up turn loads the models first; the table gives the
median and the worst of ``--turns`` turns. The machine may be shared: compare ratios, not
absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import websockets

from llmux.registry import load_keys
from tests.support.server import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo"
KEY = load_keys(DEMO / "api_keys.yaml").keys[0].key
QUESTIONS = [
    "What is the capital of France?",
    "Name a colour of the sky.",
    "How many legs does a cat have?",
    "Say hello to me.",
]
STEP = 2_400 * 2  # 100 ms of 24 kHz pcm16
MARKS = {
    "input_audio_buffer.speech_stopped": "VAD end of turn",
    "conversation.item.input_audio_transcription.completed": "transcript",
    "response.audio_transcript.delta": "first answer text",
    "response.audio.delta": "first answer audio",
}


def _speech(url: str, text: str) -> bytes:
    body = {"model": "hibari", "input": text, "voice": "heart", "response_format": "pcm"}
    return httpx.post(
        f"{url}/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
    ).content


async def _turn(url: str, speech: bytes, silence_ms: int) -> dict[str, float]:
    """Seconds from the end of speech to each mark."""
    ws_url = url.replace("http://", "ws://") + "/v1/realtime?model=smollm2"
    headers = {"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "realtime=v1"}  # beta events
    async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
        session = {
            "instructions": "Answer in one short sentence.",
            "max_response_output_tokens": 40,
            "turn_detection": {"type": "server_vad", "silence_duration_ms": silence_ms},
        }
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        seen: dict[str, float] = {}
        spoken_until: list[float] = []

        async def read() -> None:
            async for message in ws:
                kind = json.loads(message)["type"]
                if kind in MARKS and kind not in seen:
                    seen[kind] = time.perf_counter()
                if kind == "response.done":
                    return

        reader = asyncio.ensure_future(read())
        audio = b"\0" * (STEP * 5) + speech + b"\0" * (STEP * 30)
        speech_end = STEP * 5 + len(speech)
        started = time.perf_counter()
        for n, at in enumerate(range(0, len(audio), STEP)):
            if reader.done():
                break
            await ws.send(
                json.dumps(
                    {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio[at : at + STEP]).decode()}
                )
            )
            if at < speech_end <= at + STEP:
                spoken_until.append(time.perf_counter())
            await asyncio.sleep(max(0.0, started + (n + 1) * 0.1 - time.perf_counter()))  # real-time pace
        await asyncio.wait_for(reader, 300)
    end = spoken_until[0]
    return {MARKS[k]: t - end for k, t in seen.items()}


def _chat_baseline(url: str, question: str) -> dict[str, float]:
    """The same question straight to /v1/chat/completions (streamed), for comparison: what the
    chat model alone takes to its first token and to its whole answer on this machine now."""
    body = {
        "model": "smollm2",
        "stream": True,
        "max_tokens": 40,
        "messages": [
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": question},
        ],
    }
    started = time.perf_counter()
    first = None
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=300
    ) as r:
        for line in r.iter_lines():
            if first is None and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - started
    return {"chat alone: first token": first or 0.0, "chat alone: whole answer": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--silence-ms", type=int, default=500)
    args = parser.parse_args(argv if argv is not None else [])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmux",
            "serve",
            "--config",
            str(DEMO),
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--allow-demo-keys",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _up(url), 60, "llmux serve")
        speeches = [_speech(url, q) for q in QUESTIONS]
        asyncio.run(_turn(url, speeches[-1], args.silence_ms))  # warm-up: every model loads
        runs = []
        for i in range(args.turns):
            question = i % (len(speeches) - 1)
            runs.append(
                {
                    **asyncio.run(_turn(url, speeches[question], args.silence_ms)),
                    **_chat_baseline(url, QUESTIONS[question]),
                }
            )
    finally:
        server.terminate()
        server.wait(30)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"end of user speech → ... on the demo (CPU, {os.cpu_count()} cores, load average {load}), {args.turns} turns,"
    )
    print(f"silence_duration_ms={args.silence_ms}; the last two rows: the same question over HTTP, chat model alone")
    print(f"{'mark':<26} {'median s':>9} {'worst s':>8}")
    for mark in [*MARKS.values(), "chat alone: first token", "chat alone: whole answer"]:
        values = [r[mark] for r in runs if mark in r]
        if values:
            print(f"{mark:<26} {statistics.median(values):>9.2f} {max(values):>8.2f}")


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main(sys.argv[1:])
