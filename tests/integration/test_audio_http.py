"""Speech in and out through the real app and the official openai client, with the demo's real
models: hibari speaks, Whisper tiny.en (faster-whisper) listens."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import openai
import pytest
import pytest_asyncio

from llmux.audio.decode import decode_audio
from llmux.audio.encode import encode_audio
from llmux.registry.config import Limits
from tests.support.audio import encode
from tests.support.http import demo_app, demo_registry, openai_client, raw_client, words

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

FOX = "The quick brown fox jumps over the lazy dog."
ASR, TTS = "whisper-tiny-en", "hibari"
MAGIC = {"mp3": (b"ID3", b"\xff\xf3", b"\xff\xfb", b"\xff\xf2"), "opus": (b"OggS",), "aac": (b"\xff\xf1", b"\xff\xf9")}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app():  # type: ignore[no-untyped-def]
    return demo_app()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(app):  # type: ignore[no-untyped-def]
    return openai_client(app)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fox_wav(client) -> bytes:  # type: ignore[no-untyped-def]
    response = await client.audio.speech.create(model=TTS, input=FOX, voice="heart", response_format="wav")
    return response.content


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac"])
async def test_round_trip_speech_then_transcription(client, fmt: str) -> None:  # type: ignore[no-untyped-def]
    spoken = await client.audio.speech.create(model=TTS, input=FOX, voice="heart", response_format=fmt)
    assert spoken.content.startswith(MAGIC[fmt])
    heard = await client.audio.transcriptions.create(model=ASR, file=(f"fox.{fmt}", spoken.content))
    assert words(heard.text) == words(FOX)


async def test_no_response_format_means_mp3(app) -> None:  # type: ignore[no-untyped-def]
    async with raw_client(app) as http:
        response = await http.post("/v1/audio/speech", json={"model": TTS, "input": FOX, "voice": "alloy"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert abs(decode_audio(response.content).size / 16_000 - 3.1) < 0.6


async def test_webm_opus_labelled_recording_wav_is_transcribed(client, fox_wav: bytes) -> None:  # type: ignore[no-untyped-def]
    pcm = decode_audio(fox_wav, 48_000)
    webm = encode(pcm, 48_000, "webm", "libopus")  # what a browser's MediaRecorder makes
    heard = await client.audio.transcriptions.create(model=ASR, file=("recording.wav", webm, "audio/wav"))
    assert words(heard.text) == words(FOX)


async def test_response_formats(client, fox_wav: bytes) -> None:  # type: ignore[no-untyped-def]
    upload = ("fox.wav", fox_wav)
    text = await client.audio.transcriptions.create(model=ASR, file=upload, response_format="text")
    assert words(text) == words(FOX)
    srt = await client.audio.transcriptions.create(model=ASR, file=upload, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and words(srt.split("\n", 2)[2]) == words(FOX)
    vtt = await client.audio.transcriptions.create(model=ASR, file=upload, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")
    verbose = await client.audio.transcriptions.create(
        model=ASR, file=upload, response_format="verbose_json", timestamp_granularities=["word", "segment"], language="en"
    )
    assert verbose.language == "english" and abs(verbose.duration - 3.1) < 0.6
    assert [w.word.lower().strip(".") for w in verbose.words] == words(FOX)
    assert all(a.end <= b.start + 0.01 for a, b in zip(verbose.words, verbose.words[1:]))
    assert verbose.segments and verbose.segments[0].start == 0.0


async def test_concurrent_transcriptions(client, fox_wav: bytes) -> None:  # type: ignore[no-untyped-def]
    results = await asyncio.gather(
        *(client.audio.transcriptions.create(model=ASR, file=("fox.wav", fox_wav)) for _ in range(4))
    )
    assert all(words(r.text) == words(FOX) for r in results)


@pytest.mark.parametrize(("data", "says"), [(b"", "empty"), (b"\x1aE\xdf\xa3garbage" * 50, "could not be decoded")])
async def test_undecodable_or_empty_upload_is_400(client, data: bytes, says: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.audio.transcriptions.create(model=ASR, file=("recording.wav", data))
    assert says in caught.value.message


async def test_over_the_size_limit_is_413(fox_wav: bytes) -> None:
    registry = demo_registry()
    small = demo_app(dataclasses.replace(registry, limits=Limits(max_audio_mb=0.05)))
    client = openai_client(small)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.audio.transcriptions.create(model=ASR, file=("fox.wav", fox_wav))
    assert caught.value.status_code == 413
    assert "0.05 MB" in caught.value.message


async def test_speed_changes_duration(client) -> None:  # type: ignore[no-untyped-def]
    normal = await client.audio.speech.create(model=TTS, input=FOX, voice="heart", response_format="wav")
    fast = await client.audio.speech.create(model=TTS, input=FOX, voice="heart", response_format="wav", speed=2.0)
    ratio = decode_audio(normal.content).size / decode_audio(fast.content).size
    assert 1.6 < ratio < 2.4


async def test_streamed_speech_arrives_in_pieces_and_decodes(client) -> None:  # type: ignore[no-untyped-def]
    text = " ".join([FOX] * 4).replace(". ", ".\n")
    async with client.audio.speech.with_streaming_response.create(
        model=TTS, input=text, voice="heart", response_format="mp3", extra_body={"stream": True}
    ) as response:
        assert response.headers.get("transfer-encoding") == "chunked" or "content-length" not in response.headers
        pieces = [piece async for piece in response.iter_bytes()]
    assert abs(decode_audio(b"".join(pieces)).size / 16_000 - 4 * 3.1) < 2.5


async def test_voices_and_models_are_public_speech_is_not(app) -> None:  # type: ignore[no-untyped-def]
    async with raw_client(app, key=None) as http:
        voices = (await http.get("/v1/audio/voices")).json()
        models = (await http.get("/v1/audio/models")).json()
        asr_models = (await http.get("/v1/audio/models", params={"type": "asr"})).json()
        denied = await http.post("/v1/audio/speech", json={"model": TTS, "input": "hi"})
    assert {"id": "heart", "name": "heart"} in voices["voices"]
    assert [m["id"] for m in models["models"]] == [TTS]
    assert [m["id"] for m in asr_models["models"]] == [ASR]
    assert denied.status_code == 401


@pytest.mark.parametrize("voice", ["nobody", "../../etc/passwd", "/models/voices/x.wav"])
async def test_a_voice_is_picked_only_by_a_listed_name(client, voice: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.audio.speech.create(model=TTS, input=FOX, voice=voice)
    assert "heart" in caught.value.message and caught.value.body["param"] == "voice"


async def test_wrong_model_type_is_404(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.NotFoundError):
        await client.audio.transcriptions.create(model=TTS, file=("x.wav", encode_audio(np.zeros(1600, np.float32), 16_000, "wav")))
    with pytest.raises(openai.NotFoundError):
        await client.audio.speech.create(model=ASR, input=FOX, voice="heart")


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"response_format": "diarized_json"}, "response_format"), ({"temperature": "hot"}, "temperature"), ({}, "model")],
)
async def test_bad_form_fields_are_400_naming_the_field(app, fox_wav: bytes, fields: dict, param: str) -> None:  # type: ignore[no-untyped-def]
    data = {"model": ASR, **fields} if param != "model" else fields
    async with raw_client(app) as http:
        response = await http.post("/v1/audio/transcriptions", data=data, files={"file": ("fox.wav", fox_wav)})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
