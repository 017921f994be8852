"""What strict streaming clients accept (OpenCode 1.18's native parser, the AI SDK): the check
the stream tests share."""

from __future__ import annotations

import json
from typing import Any

FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter"}


def sse_events(body: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body (comments dropped); ``[DONE]`` stays a string."""
    events = [block[6:] for block in body.split("\n\n") if block.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def assert_strict(events: list[Any]) -> None:
    """One ``finish_reason`` from the OpenAI set; after it only usage-only chunks, then
    ``[DONE]``; an error chunk, if any, comes before the finish."""
    assert events and events[-1] == "[DONE]" and "[DONE]" not in events[:-1]
    finishes = [i for i, e in enumerate(events[:-1]) if e.get("choices") and e["choices"][0].get("finish_reason")]
    assert len(finishes) == 1, f"expected one finish chunk, got {len(finishes)}"
    at = finishes[0]
    assert events[at]["choices"][0]["finish_reason"] in FINISH_REASONS
    for after in events[at + 1 : -1]:
        assert after.get("choices") == [] and "usage" in after, f"after the finish: {after}"
    assert all("error" not in e for e in events[at:-1])
