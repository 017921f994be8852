"""/v1/realtime over a real socket against the demo config: speech made by the demo TTS goes in,
Silero VAD finds the turn, Whisper transcribes it, SmolLM2 answers and hibari speaks the answer.
Both protocols, through the real SDK: beta (``client.beta.realtime``, ``OpenAI-Beta: realtime=v1``)
and GA (``client.realtime``), whose events are validated against the SDK's own GA types.

Barge-in is checked by events, not by the clock: the answer is spoken by a speech engine that
never finishes on its own, so the response is certainly still running when the user speaks
again; after ``input_audio_buffer.speech_started`` the old response sends nothing but its
``response.done`` (``cancelled``, ``turn_detected``), and the engine saw its cancel flag.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pydantic
import pytest
import websockets
import yaml
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent

from llmux.app import create_app
from llmux.engines.base import SpeakOptions, Voice
from llmux.engines.factory import create_engine
from llmux.registry import PhysicalModel, Registry, load_keys, load_models
from tests.support.backends import InstantChat
from tests.support.http import DEMO, DEMO_KEY, demo_app, words
from tests.support.server import serve, wait_for

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"
SECOND = "Please stop talking now."
SILENCE = b"\0\0" * 24_000  # one second of 24 kHz pcm16
AUTH = {"Authorization": f"Bearer {DEMO_KEY}"}


def speech(url: str, text: str) -> bytes:
    """``text`` spoken by the demo TTS as 24 kHz pcm16, the Realtime API's input format."""
    body = {"model": "hibari", "input": text, "voice": "heart", "response_format": "pcm"}
    return httpx.post(f"{url}/v1/audio/speech", json=body, headers=AUTH, timeout=120).content


def leases(url: str) -> int:
    return sum(m["leases"] for m in httpx.get(f"{url}/health", timeout=30).json()["loaded"])


def chunks(pcm: bytes, size: int = 4_800) -> Iterator[str]:
    for at in range(0, len(pcm), size):
        yield base64.b64encode(pcm[at : at + size]).decode()


async def until(events: AsyncIterator[Any], kind: str, seen: list[Any], timeout: float = 240) -> Any:
    async def scan() -> Any:
        async for event in events:
            seen.append(event)
            if event.type == kind:
                return event
        raise AssertionError(f"the connection closed before {kind}")

    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError(f"no {kind} within {timeout} s; last events: {[e.type for e in seen[-12:]]}") from None


GA_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeServerEvent)
BETA_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(BetaServerEvent)
BETA_UNCHECKED = ("session.created", "session.updated")
"""The beta SDK types a session's model as one of OpenAI's own names (and its tool_choice as a
string only, though beta's docs let it name a function): these are read unchecked."""


async def ga_until(conn: Any, kind: str, seen: list[Any], timeout: float = 240, *, beta: bool = False) -> Any:
    """Like ``until``, for a GA connection: each event is validated against the SDK's GA types
    (iterating the connection would only construct them, unchecked), so a wrong shape fails;
    ``beta``: a beta connection, validated against the SDK's beta types."""

    async def scan() -> Any:
        while True:
            raw = await conn.recv_bytes()
            if not beta:
                event = GA_EVENT.validate_json(raw)
            elif json.loads(raw)["type"] in BETA_UNCHECKED:
                event = conn.parse_event(raw)
            else:
                event = BETA_EVENT.validate_json(raw)
            seen.append(event)
            if event.type == kind:
                return event

    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError(f"no {kind} within {timeout} s; last events: {[e.type for e in seen[-12:]]}") from None


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(demo_app()) as base:
        yield base


def sdk(url: str) -> openai.AsyncOpenAI:
    ws = url.replace("http://", "ws://") + "/v1"
    return openai.AsyncOpenAI(base_url=f"{url}/v1", websocket_base_url=ws, api_key=DEMO_KEY, max_retries=0)


async def beta_until(conn: Any, kind: str, seen: list[Any], timeout: float = 240) -> Any:
    """``ga_until`` for a beta connection."""
    return await ga_until(conn, kind, seen, timeout, beta=True)


def connect(url: str, protocol: str, model: str) -> Any:
    """The SDK's beta (``client.beta.realtime``) or GA (``client.realtime``) connection."""
    client = sdk(url)
    return (client.beta.realtime if protocol == "beta" else client.realtime).connect(model=model)


def text_session(protocol: str, **fields: Any) -> dict[str, Any]:
    """A text-only session without turn detection, written the protocol's way."""
    if protocol == "beta":
        return {"modalities": ["text"], "turn_detection": None, **fields}
    return {"type": "realtime", "output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}, **fields}


@pytest.mark.parametrize("protocol", ["beta", "ga"])
async def test_an_item_is_retrieved_and_an_unknown_one_is_an_error(url: str, protocol: str) -> None:
    recv = beta_until if protocol == "beta" else ga_until
    seen: list[Any] = []
    async with connect(url, protocol, "smollm2") as conn:
        await recv(conn, "session.created", seen)
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}
        await conn.conversation.item.create(item=item)
        created = await recv(
            conn, "conversation.item.created" if protocol == "beta" else "conversation.item.added", seen
        )
        await conn.conversation.item.retrieve(item_id=created.item.id)
        retrieved = (await recv(conn, "conversation.item.retrieved", seen)).item
        assert retrieved.id == created.item.id and retrieved.role == "user"
        assert [(c.type, c.text) for c in retrieved.content] == [("input_text", "Say hello.")]
        await conn.conversation.item.delete(item_id=created.item.id)
        await recv(conn, "conversation.item.deleted", seen)
        for missing in (created.item.id, "item_nope"):
            await conn.conversation.item.retrieve(item_id=missing, event_id=f"r-{missing}")
            error = (await recv(conn, "error", seen)).error
            assert (error.type, error.code, error.param) == ("invalid_request_error", "item_not_found", "item_id")
            assert error.event_id == f"r-{missing}" and missing in error.message


@pytest.mark.parametrize("protocol", ["beta", "ga"])
async def test_output_audio_buffer_clear_is_refused_as_webrtc_only(url: str, protocol: str) -> None:
    recv = beta_until if protocol == "beta" else ga_until
    seen: list[Any] = []
    async with connect(url, protocol, "smollm2") as conn:
        await recv(conn, "session.created", seen)
        await conn.output_audio_buffer.clear(event_id="o1")
        error = (await recv(conn, "error", seen)).error
        assert (error.type, error.code, error.param, error.event_id) == (
            "invalid_request_error",
            "unsupported_event",
            "type",
            "o1",
        )
        assert "output_audio_buffer.clear" in error.message and "WebRTC/SIP" in error.message
        await conn.input_audio_buffer.clear()  # and the session goes on
        await recv(conn, "input_audio_buffer.cleared", seen)


async def test_spoken_question_gets_transcript_text_and_audio(url: str) -> None:
    pcm = SILENCE + speech(url, QUESTION) + 2 * SILENCE
    seen: list[Any] = []
    async with sdk(url).beta.realtime.connect(model="smollm2") as conn:
        events = conn.__aiter__()
        assert (await until(events, "session.created", seen)).session.model == "smollm2"
        await conn.session.update(
            session={"instructions": "Answer in one short sentence.", "max_response_output_tokens": 40}
        )
        await until(events, "session.updated", seen)
        for piece in chunks(pcm):
            await conn.input_audio_buffer.append(audio=piece)
        done = await until(events, "response.done", seen)
        assert leases(url) == 0  # an idle session holds no model
    types = [e.type for e in seen]
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.audio_transcript.delta",
        "response.audio.delta",
        "response.audio.done",
    ):
        assert kind in types, kind
    assert types.index("input_audio_buffer.speech_stopped") < types.index("response.created")
    heard = next(e for e in seen if e.type == "conversation.item.input_audio_transcription.completed")
    assert words(heard.transcript) == words(QUESTION)
    said = "".join(e.delta for e in seen if e.type == "response.audio_transcript.delta")
    assert said.strip() and next(e for e in seen if e.type == "response.audio_transcript.done").transcript == said
    audio = b"".join(base64.b64decode(e.delta) for e in seen if e.type == "response.audio.delta")
    seconds = len(audio) / 2 / 24_000
    assert 0.3 < seconds < 60 and np.abs(np.frombuffer(audio, "<i2")).max() > 1000  # speech, not silence
    assert done.response.status == "completed" and done.response.usage.output_tokens > 0
    assert done.response.output[0].content[0].transcript == said


async def test_text_turn_through_conversation_items(url: str) -> None:
    seen: list[Any] = []
    async with sdk(url).beta.realtime.connect(model="smollm2") as conn:
        events = conn.__aiter__()
        await conn.session.update(session={"modalities": ["text"], "turn_detection": None})
        await until(events, "session.updated", seen)
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}
        await conn.conversation.item.create(item=item)
        await until(events, "conversation.item.created", seen)
        await conn.response.create(response={"max_response_output_tokens": 20})
        done = await until(events, "response.done", seen)
    text = "".join(e.delta for e in seen if e.type == "response.text.delta")
    assert text and next(e for e in seen if e.type == "response.text.done").text == text
    assert not any(e.type.startswith("response.audio") for e in seen)
    assert done.response.status in ("completed", "incomplete")


async def test_bad_events_are_error_events_and_the_session_goes_on(url: str) -> None:
    ws_url = url.replace("http://", "ws://") + "/v1/realtime?model=smollm2"
    async with websockets.connect(ws_url, additional_headers=AUTH) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        sent = [
            "not json",
            json.dumps({"type": "no.such.event"}),
            json.dumps({"type": "response.cancel", "event_id": "c1"}),
            json.dumps({"type": "session.update", "session": {"model": "nope"}}),
            json.dumps({"type": "session.update", "session": {"input_audio_format": "g711_ulaw"}}),
            json.dumps({"type": "input_audio_buffer.append", "audio": "***"}),
            json.dumps({"type": "input_audio_buffer.commit"}),
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {"role": "user", "content": [{"type": "input_audio", "audio": "AAAA"}]},
                }
            ),
        ]
        for message in sent:
            await ws.send(message)
        errors = [json.loads(await ws.recv()) for _ in sent]
        assert [e["type"] for e in errors] == ["error"] * len(sent)
        assert errors[2]["error"]["code"] == "response_cancel_not_active" and errors[2]["error"]["event_id"] == "c1"
        assert errors[3]["error"]["code"] == "model_not_found"
        assert errors[6]["error"]["code"] == "input_audio_buffer_commit_empty"
        assert errors[7]["error"]["param"] == "item.content"
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert json.loads(await ws.recv())["type"] == "input_audio_buffer.cleared"


async def test_keys_header_or_browser_subprotocol(url: str) -> None:
    ws_url = url.replace("http://", "ws://") + "/v1/realtime"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(ws_url, subprotocols=["realtime", "openai-insecure-api-key.wrong"]):  # type: ignore[list-item]
            pass
    offered = ["realtime", f"openai-insecure-api-key.{DEMO_KEY}", "openai-beta.realtime-v1"]
    async with websockets.connect(ws_url, subprotocols=offered) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"  # a browser closes a socket that picks none it offered
        assert json.loads(await ws.recv())["type"] == "session.created"


# ---- GA (no OpenAI-Beta header) ------------------------------------------------------------

BETA_NAMES = (
    "conversation.item.created",
    "response.audio.delta",
    "response.audio_transcript.delta",
    "response.text.delta",
)


async def test_ga_spoken_question_gets_transcript_text_and_audio(url: str) -> None:
    pcm = SILENCE + speech(url, QUESTION) + 2 * SILENCE
    seen: list[Any] = []
    async with sdk(url).realtime.connect(model="smollm2") as conn:
        created = await ga_until(conn, "session.created", seen)
        assert created.session.type == "realtime" and created.session.model == "smollm2"
        audio_in = {
            "format": {"type": "audio/pcm", "rate": 24_000},
            "transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
        }
        session = {
            "type": "realtime",
            "instructions": "Answer in one short sentence.",
            "max_output_tokens": 40,
            "output_modalities": ["audio"],
            "audio": {"input": audio_in, "output": {"format": {"type": "audio/pcm"}, "voice": "alloy"}},
        }
        await conn.session.update(session=session)  # type: ignore[arg-type]
        updated = (await ga_until(conn, "session.updated", seen)).session
        assert updated.max_output_tokens == 40 and updated.audio.input.turn_detection.type == "server_vad"
        for piece in chunks(pcm):
            await conn.input_audio_buffer.append(audio=piece)
        done = await ga_until(conn, "response.done", seen)
        assert leases(url) == 0
    types = [e.type for e in seen]
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_item.done",
    ):
        assert kind in types, kind
    assert not set(BETA_NAMES) & set(types)
    heard = next(e for e in seen if e.type == "conversation.item.input_audio_transcription.completed")
    assert words(heard.transcript) == words(QUESTION) and heard.usage.seconds > 0.5
    said = "".join(e.delta for e in seen if e.type == "response.output_audio_transcript.delta")
    assert said.strip()
    assert next(e for e in seen if e.type == "response.output_audio_transcript.done").transcript == said
    audio = b"".join(base64.b64decode(e.delta) for e in seen if e.type == "response.output_audio.delta")
    assert 0.3 < len(audio) / 2 / 24_000 < 60 and np.abs(np.frombuffer(audio, "<i2")).max() > 1000
    assert done.response.status == "completed" and done.response.output_modalities == ["audio"]
    (answer,) = done.response.output
    assert answer.role == "assistant" and answer.content[0].type == "output_audio"
    assert answer.content[0].transcript == said and done.response.usage.output_tokens > 0


async def test_ga_text_turn_through_conversation_items(url: str) -> None:
    seen: list[Any] = []
    async with sdk(url).realtime.connect(model="smollm2") as conn:
        await ga_until(conn, "session.created", seen)
        session = {"type": "realtime", "output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}
        await conn.session.update(session=session)  # type: ignore[arg-type]
        assert (await ga_until(conn, "session.updated", seen)).session.output_modalities == ["text"]
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}
        await conn.conversation.item.create(item=item)  # type: ignore[arg-type]
        added = (await ga_until(conn, "conversation.item.added", seen)).item
        assert added.content[0].text == "Say hello."
        await conn.response.create(response={"output_modalities": ["text"], "max_output_tokens": 20})
        done = await ga_until(conn, "response.done", seen)
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert text and next(e for e in seen if e.type == "response.output_text.done").text == text
    assert not any(e.type.startswith("response.output_audio") for e in seen)
    assert not set(BETA_NAMES) & {e.type for e in seen}
    assert done.response.status in ("completed", "incomplete") and done.response.output_modalities == ["text"]
    assert done.response.output[0].content[0].type == "output_text" and done.response.output[0].content[0].text == text


async def test_the_header_chooses_beta_and_ga_refuses_what_it_cannot_honour(url: str) -> None:
    ws_url = url.replace("http://", "ws://") + "/v1/realtime?model=smollm2"
    beta = {**AUTH, "OpenAI-Beta": "realtime=v1"}
    async with websockets.connect(ws_url, additional_headers=beta) as ws:
        session = json.loads(await ws.recv())["session"]
        assert "modalities" in session and "output_modalities" not in session
    async with websockets.connect(ws_url, additional_headers=AUTH) as ws:
        session = GA_EVENT.validate_json(await ws.recv()).session
        assert session.type == "realtime" and session.output_modalities == ["audio"]
        refused = {
            "session.audio.input.format.type": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}},
            "session.audio.input.turn_detection.type": {
                "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}
            },
            "session.tools[0].type": {"tools": [{"type": "mcp", "server_label": "x"}]},
            "session.modalities": {"modalities": ["text"]},
            "session.type": {"type": "transcription"},
        }
        for param, body in refused.items():
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", **body}}))
            error = GA_EVENT.validate_json(await ws.recv())
            assert error.type == "error" and error.error.param == param, (param, error)
        update = {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}}
        await ws.send(json.dumps(update))  # and the session goes on
        assert GA_EVENT.validate_json(await ws.recv()).session.instructions == "Be brief."


# ---- barge-in ------------------------------------------------------------------------------

CANCELLED = threading.Event()


class EndlessVoice:
    """Speaks a quiet tone until cancelled: a response it speaks is running when barge-in comes."""

    sample_rate = 24_000

    def __init__(self, spec: PhysicalModel, registry: Registry) -> None:
        pass

    def load(self) -> float | None:
        return None

    def unload(self) -> None:
        pass

    def voices(self) -> list[Voice]:
        return [Voice("hum", "hum")]

    def languages(self) -> tuple[str, ...]:
        return ()

    def speak(self, text: str, voice: str, options: SpeakOptions, cancel: threading.Event) -> Iterator[Any]:
        tone = (0.05 * np.sin(np.arange(2_400) * 2 * np.pi * 220 / 24_000)).astype(np.float32)
        try:
            while not cancel.wait(0.02):
                yield tone
        finally:
            # Stopped either by seeing the flag here or by the caller closing this generator
            # after it saw the flag first: both count, an engine left running does not.
            if cancel.is_set():
                CANCELLED.set()


def scripted_factory(spec: PhysicalModel, registry: Registry) -> Any:
    """The demo's real models, plus the endless voice and a chat engine that calls the first tool."""
    if spec.id == "endless":
        return EndlessVoice(spec, registry)
    if spec.id == "caller":
        return InstantChat(spec, registry)
    return create_engine(spec, registry)


@pytest.fixture(scope="module")
def barge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = yaml.safe_load((DEMO / "models.yaml").read_text())
    config["models_dir"] = str(DEMO)
    config["physical"]["endless"] = {
        "type": "tts",
        "backend": "hibari",
        "weights": "pkg://hibari/assets/hibari.onnx",
        "vram_gb": 0.1,
    }
    config["virtual"]["endless"] = {"physical": "endless"}
    caller = {
        "type": "llm",
        "backend": "transformers",
        "family": "qwen3.5",
        "tools": True,
        "weights": "caller",
        "vram_gb": 0.1,
    }
    config["physical"]["caller"] = caller
    config["virtual"]["caller"] = {"physical": "caller"}
    path: Path = tmp_path_factory.mktemp("barge") / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    app = create_app(load_models(path), load_keys(DEMO / "api_keys.yaml"), factory=scripted_factory)
    with serve(app) as base:
        yield base


async def test_barge_in_cancels_the_answer(barge_url: str) -> None:
    url = barge_url
    first = SILENCE + speech(url, QUESTION) + 2 * SILENCE
    second = speech(url, SECOND) + 2 * SILENCE
    seen: list[Any] = []
    async with sdk(url).beta.realtime.connect(model="smollm2") as conn:
        events = conn.__aiter__()
        await conn.session.update(session={"speech_model": "endless", "max_response_output_tokens": 30})
        await until(events, "session.updated", seen)
        for piece in chunks(first):
            await conn.input_audio_buffer.append(audio=piece)
        answer = (await until(events, "response.audio.delta", seen)).response_id  # speaking, and never done
        for piece in chunks(second):
            await conn.input_audio_buffer.append(audio=piece)
        await until(events, "input_audio_buffer.speech_started", seen)
        after_barge_in = len(seen)
        done = await until(events, "response.done", seen)
        assert done.response.id == answer and done.response.status == "cancelled"
        assert done.response.status_details.reason == "turn_detected"
        # Nothing of the old answer between the barge-in and its response.done.
        assert not [e for e in seen[after_barge_in:-1] if getattr(e, "response_id", None) == answer]
        heard = await until(events, "conversation.item.input_audio_transcription.completed", seen)
        assert words(heard.transcript) == words(SECOND)
        await until(events, "response.created", seen)  # the new turn is answered
    wait_for(CANCELLED.is_set, 60, "the speech engine to see its cancel flag")
    wait_for(lambda: leases(url) == 0, 60, "every lease to be given back after the socket closed")


WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object"},
}


async def test_a_tool_call_arrives_as_function_call_events(barge_url: str) -> None:
    seen: list[Any] = []
    async with sdk(barge_url).beta.realtime.connect(model="caller") as conn:
        events = conn.__aiter__()
        await conn.session.update(session={"modalities": ["text"], "tools": [WEATHER], "turn_detection": None})
        await until(events, "session.updated", seen)
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}
        await conn.conversation.item.create(item=item)
        await conn.response.create()
        done = await until(events, "response.done", seen)
        (call,) = done.response.output
        assert call.type == "function_call" and call.name == "weather"
        arguments = "".join(e.delta for e in seen if e.type == "response.function_call_arguments.delta")
        finished = next(e for e in seen if e.type == "response.function_call_arguments.done")
        assert json.loads(finished.arguments) == json.loads(arguments) == {"echo": "Weather in Paris?"}
        assert finished.call_id == call.call_id and finished.item_id == call.id
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}
        await conn.conversation.item.create(item=output)
        await conn.session.update(session={"tools": []})
        await conn.response.create()
        answer = await until(events, "response.done", seen)
    assert answer.response.output[0].content[0].text == "echo: Sunny."


CLOCK = {"type": "function", "name": "clock", "description": "The time in a city.", "parameters": {"type": "object"}}


@pytest.mark.parametrize("protocol", ["beta", "ga"])
async def test_a_session_tool_choice_forces_that_function(barge_url: str, protocol: str) -> None:
    # The scripted model calls the first tool it is offered unless a call was forced: clock is the second.
    seen: list[Any] = []
    forced = {"type": "function", "name": "clock"}
    async with connect(barge_url, protocol, "caller") as conn:
        recv = beta_until if protocol == "beta" else ga_until
        await conn.session.update(session=text_session(protocol, tools=[WEATHER, CLOCK], tool_choice=forced))
        choice = (await recv(conn, "session.updated", seen)).session.tool_choice
        assert (choice if protocol == "beta" else choice.model_dump()) == forced
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Time in Paris?"}]}
        await conn.conversation.item.create(item=item)
        await conn.response.create()
        done = await recv(conn, "response.done", seen)
        (call,) = done.response.output
        assert call.type == "function_call" and call.name == "clock"
        finished = next(e for e in seen if e.type == "response.function_call_arguments.done")
        assert finished.name == "clock" and json.loads(finished.arguments) == {"echo": "Time in Paris?"}
        # A function that is not one of the tools: an error naming the param, the session unchanged.
        await conn.session.update(session=text_session(protocol, tool_choice={"type": "function", "name": "nope"}))
        error = (await recv(conn, "error", seen)).error
        assert (
            error.type == "invalid_request_error" and error.param == "session.tool_choice" and "nope" in error.message
        )
        await conn.response.create(response={"tool_choice": {"type": "function", "name": "nope"}})
        error = (await recv(conn, "error", seen)).error
        assert error.param == "response.tool_choice"


async def test_ga_barge_in_cancels_the_answer(barge_url: str) -> None:
    url = barge_url
    first = SILENCE + speech(url, QUESTION) + 2 * SILENCE
    second = speech(url, SECOND) + 2 * SILENCE
    seen: list[Any] = []
    async with sdk(url).realtime.connect(model="smollm2") as conn:
        await ga_until(conn, "session.created", seen)
        session = {"type": "realtime", "speech_model": "endless", "max_output_tokens": 30}
        await conn.session.update(session=session)  # type: ignore[arg-type]
        await ga_until(conn, "session.updated", seen)
        for piece in chunks(first):
            await conn.input_audio_buffer.append(audio=piece)
        delta = await ga_until(conn, "response.output_audio.delta", seen)  # speaking, and never done
        for piece in chunks(second):
            await conn.input_audio_buffer.append(audio=piece)
        await ga_until(conn, "input_audio_buffer.speech_started", seen)
        after_barge_in = len(seen)
        done = await ga_until(conn, "response.done", seen)
        assert done.response.id == delta.response_id and done.response.status == "cancelled"
        assert done.response.status_details.reason == "turn_detected"
        assert not [e for e in seen[after_barge_in:-1] if getattr(e, "response_id", None) == delta.response_id]
        unfinished = next(e for e in seen[after_barge_in:] if e.type == "conversation.item.done")
        assert unfinished.item.id == delta.item_id and unfinished.item.status == "incomplete"
        await ga_until(conn, "response.created", seen)  # the new turn is answered
    wait_for(lambda: leases(url) == 0, 60, "every lease to be given back after the socket closed")


async def test_ga_tool_call_arrives_as_function_call_events(barge_url: str) -> None:
    seen: list[Any] = []
    async with sdk(barge_url).realtime.connect(model="caller") as conn:
        await ga_until(conn, "session.created", seen)
        session = {
            "type": "realtime",
            "output_modalities": ["text"],
            "tools": [WEATHER],
            "tool_choice": "auto",
            "audio": {"input": {"turn_detection": None}},
        }
        await conn.session.update(session=session)  # type: ignore[arg-type]
        assert (await ga_until(conn, "session.updated", seen)).session.tools[0].name == "weather"
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}
        await conn.conversation.item.create(item=item)  # type: ignore[arg-type]
        await conn.response.create()
        done = await ga_until(conn, "response.done", seen)
        (call,) = done.response.output
        assert call.type == "function_call" and call.name == "weather"
        finished = next(e for e in seen if e.type == "response.function_call_arguments.done")
        assert json.loads(finished.arguments) == {"echo": "Weather in Paris?"} and finished.call_id == call.call_id
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}
        await conn.conversation.item.create(item=output)  # type: ignore[arg-type]
        await conn.response.create(response={"tools": []})
        answer = await ga_until(conn, "response.done", seen)
    assert answer.response.output[0].content[0].type == "output_text"
    assert answer.response.output[0].content[0].text == "echo: Sunny."
