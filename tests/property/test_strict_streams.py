"""Property: whatever a turn produces, and wherever it fails, the encoded stream is one strict
clients accept (one finish_reason from the OpenAI set, then only usage and [DONE])."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmux.chat.events import ContentDelta, Finish, ReasoningDelta, ToolCallArgs, ToolCallStart, Usage
from llmux.chat.stream import ChunkEncoder
from llmux.protocol.errors import error_body
from llmux.protocol.sse import DONE, sse
from llmux.services.chat import GenerationFailed
from tests.support.strict import assert_strict, sse_events

DELTAS = st.one_of(
    st.builds(ContentDelta, st.text(max_size=5)),
    st.builds(ReasoningDelta, st.text(max_size=5)),
    st.builds(ToolCallStart, st.integers(0, 2), st.just("call_x"), st.just("f")),
    st.builds(ToolCallArgs, st.integers(0, 2), st.text(max_size=5)),
)
USAGE = st.builds(Usage, st.integers(0, 9), st.integers(0, 9))
FINISH = st.builds(Finish, st.sampled_from(["stop", "length", "tool_calls"]), USAGE)


@settings(max_examples=300, deadline=None)
@given(st.lists(DELTAS, max_size=12), st.one_of(FINISH, st.none()), st.booleans())
def test_every_stream_ends_the_strict_way(deltas: list, finish: Finish | None, usage: bool) -> None:
    """``finish`` None: the turn failed after ``deltas`` (the service sends the error chunk,
    then ``abort``); otherwise it finished."""
    encoder = ChunkEncoder("m", include_usage=usage)
    body = encoder.start() + encoder.events(deltas)
    if finish is None:
        body += sse(error_body(GenerationFailed("boom"))) + encoder.abort(Usage(1, len(deltas)))
    else:
        body += encoder.events([finish]) + encoder.abort(None)  # abort after a finish adds nothing
    events = sse_events((body + DONE).decode())
    assert_strict(events)
    assert (events[-2]["choices"] == [] and "usage" in events[-2]) == usage
    assert any("error" in e for e in events[:-1]) == (finish is None)
