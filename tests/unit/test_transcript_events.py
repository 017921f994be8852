"""The SSE events of a streamed transcription: deltas that join to the done text, whether the
backend recognises segment by segment (faster-whisper) or the whole clip at once."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

from llmux.api.audio import transcript_events
from llmux.engines.base import Segment, Transcript
from llmux.protocol.errors import ModelLoadFailed


async def _pieces(*items: Segment | Transcript | Exception) -> AsyncGenerator[Segment | Transcript, None]:
    for item in items:
        if isinstance(item, Exception):
            raise item
        yield item


async def _events(*items: Segment | Transcript | Exception) -> list[dict[str, object]]:
    return [json.loads(chunk[6:]) async for chunk in transcript_events(_pieces(*items))]


async def test_segments_become_deltas_that_join_to_the_text() -> None:
    segments = [
        Segment(start=0, end=1, text="Hello there."),
        Segment(start=1, end=2, text=""),
        Segment(start=2, end=3, text="Bye."),
    ]
    events = await _events(*segments, Transcript(text="Hello there. Bye.", language="en", duration=3))
    assert events == [
        {"type": "transcript.text.delta", "delta": "Hello there."},
        {"type": "transcript.text.delta", "delta": " Bye."},
        {"type": "transcript.text.done", "text": "Hello there. Bye."},
    ]


async def test_a_backend_that_cannot_stream_sends_one_delta() -> None:
    events = await _events(Transcript(text="All at once.", language="en", duration=1))
    assert events == [
        {"type": "transcript.text.delta", "delta": "All at once."},
        {"type": "transcript.text.done", "text": "All at once."},
    ]


async def test_silence_sends_only_done() -> None:
    assert await _events(Transcript(text="", language="en", duration=1)) == [
        {"type": "transcript.text.done", "text": ""}
    ]


async def test_a_failure_after_the_headers_is_an_error_event() -> None:
    events = await _events(Segment(start=0, end=1, text="Hi."), ModelLoadFailed("boom"))
    assert events[0]["type"] == "transcript.text.delta"
    assert "error" in events[1] and events[1]["error"]["message"] == "boom"  # type: ignore[index]
