"""Streamed transcription and speech as server-sent events, over a real socket, with the demo's
real models and the official openai client: hibari speaks, Whisper tiny.en (faster-whisper)
listens segment by segment."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from llmux.audio.decode import decode_audio
from tests.support.http import DEMO_KEY, demo_app, words
from tests.support.server import serve

pytestmark = pytest.mark.slow

FOX = "The quick brown fox jumps over the lazy dog."
LONG = (
    "The quick brown fox jumps over the lazy dog. Then it runs into the forest and hides behind a tree. "
    "Later that evening the fox comes back home and sleeps until morning."
)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(demo_app()) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=DEMO_KEY, max_retries=0, timeout=120)


def _speech(client: openai.OpenAI, text: str) -> bytes:
    return client.audio.speech.create(model="hibari", input=text, voice="heart", response_format="wav").content


def _sse(response: httpx.Response) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def test_streamed_transcription_sends_deltas_then_done(client: openai.OpenAI) -> None:
    audio = _speech(client, LONG)
    stream = client.audio.transcriptions.create(model="whisper-tiny-en", file=("long.wav", audio), stream=True)
    events = list(stream)
    types = [e.type for e in events]
    assert types[-1] == "transcript.text.done" and set(types[:-1]) == {"transcript.text.delta"}
    assert len(types) >= 3  # several segments, each sent as it was recognised
    done = events[-1]
    assert "".join(e.delta for e in events[:-1]) == done.text  # type: ignore[union-attr]
    heard = words(done.text)  # type: ignore[union-attr]
    assert heard[:9] == words(FOX) and heard[-2:] == ["until", "morning"]


def test_streamed_transcription_refuses_subtitle_formats(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(
            model="whisper-tiny-en", file=("fox.wav", _speech(client, FOX)), stream=True, response_format="srt"
        )
    assert caught.value.body["param"] == "stream"  # type: ignore[index]


@pytest.mark.parametrize("fmt", ["mp3", "pcm", "wav"])
def test_speech_as_sse_decodes_back_to_the_text(client: openai.OpenAI, url: str, fmt: str) -> None:
    text = f"{FOX}\n{FOX}"
    body = {"model": "hibari", "input": text, "voice": "heart", "response_format": fmt, "stream_format": "sse"}
    with httpx.stream(
        "POST", f"{url}/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {DEMO_KEY}"}, timeout=120
    ) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = _sse(response)
    assert events[-1] == {"type": "speech.audio.done"}
    deltas = events[:-1]
    assert len(deltas) >= 2 and {e["type"] for e in deltas} == {"speech.audio.delta"}
    audio = b"".join(base64.b64decode(str(e["audio"])) for e in deltas)
    if fmt == "pcm":  # raw 24 kHz s16le: wrap it for the transcription below
        assert abs(len(audio) / 2 / 24_000 - 2 * 3.1) < 1.5
        return
    assert abs(decode_audio(audio).size / 16_000 - 2 * 3.1) < 1.5
    heard = client.audio.transcriptions.create(model="whisper-tiny-en", file=(f"x.{fmt}", audio))
    assert words(heard.text) == words(FOX) * 2


def test_speech_as_sse_through_the_sdk(client: openai.OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="hibari", input=FOX, voice="heart", response_format="wav", stream_format="sse"
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    events = [json.loads(line[6:]) for line in lines]
    assert events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert words(client.audio.transcriptions.create(model="whisper-tiny-en", file=("fox.wav", audio)).text) == words(
        FOX
    )
