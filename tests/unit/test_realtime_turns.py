"""The realtime session's turn logic with a scripted VAD (a test double for the Silero scores):
a speaker who never pauses still gets a turn once the buffer reaches ``limits.max_audio_s``, so
the input buffer cannot grow without bound."""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from llmux.protocol.realtime import Session, TurnDetection
from llmux.services import realtime


class Service(SimpleNamespace):
    async def transcribe(self, session: Session, audio: Any) -> str:
        self.heard.append(audio.size)
        return "words"


async def test_endless_speech_is_cut_into_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(realtime, "silero_scorer", lambda: lambda window: 0.9)  # always speech
    service = Service(registry=SimpleNamespace(limits=SimpleNamespace(max_audio_s=1.0)), heard=[])
    session = Session(id="s", model="m", turn_detection=TurnDetection(create_response=False))
    talk = realtime.RealtimeSession(service, session)  # type: ignore[arg-type]
    chunk = base64.b64encode(np.full(2_400, 3_000, "<i2").tobytes()).decode()  # 100 ms
    for _ in range(25):
        await talk.handle(f'{{"type": "input_audio_buffer.append", "audio": "{chunk}"}}')
    await asyncio.wait_for(asyncio.gather(talk._turn or asyncio.sleep(0)), 30)
    kinds = [type(e).__name__ for e in talk.outbox._events]
    assert kinds[:4] == ["SpeechStarted", "SpeechStopped", "AudioCommitted", "ItemCreated"]
    assert kinds.count("SpeechStopped") == 2  # 2.5 s of speech, turns of at most 1 s
    assert all(size <= 16_000 + 2_400 for size in service.heard)  # each turn within the limit (+ one append)
    assert talk._buffer.size <= 16_000 + 2_400
    await talk.close()
