"""Property: whatever a turn's events are (reasoning, text, whitespace, tool calls, in any
order), the Responses API stream keeps its contract — sequence numbers count from 0, every
item is added then done once, in output order, deltas carry the item's id and add up to its
final text, exactly one terminal event — and the whole response equals the streamed one."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from llmux.chat.events import ChatEvent, ContentDelta, Finish, ReasoningDelta, ToolCallArgs, ToolCallStart, Usage
from llmux.chat.responses_out import ResponseBuilder, response_skeleton

TEXT = st.sampled_from(["", " ", "\n\n", "Hello", " world", "{\"a\":", " 1}", "ü", "</x>"])


@st.composite
def turns(draw: st.DrawFn) -> list[ChatEvent]:
    events: list[ChatEvent] = []
    calls = 0
    for kind in draw(st.lists(st.sampled_from(["reasoning", "content", "call"]), max_size=8)):
        if kind == "call":
            events.append(ToolCallStart(calls, f"call_{calls}", f"tool_{calls}"))
            events += [ToolCallArgs(calls, t) for t in draw(st.lists(TEXT, max_size=3))]
            calls += 1
        else:
            kind_of = ReasoningDelta if kind == "reasoning" else ContentDelta
            events += [kind_of(t) for t in draw(st.lists(TEXT, min_size=1, max_size=3))]
    reason = draw(st.sampled_from(["stop", "length"])) if not calls else "tool_calls"
    return [*events, Finish(reason, Usage(3, len(events)))]


def stream(events: list[ChatEvent], parallel: bool) -> tuple[list[dict], dict]:  # type: ignore[type-arg]
    builder = ResponseBuilder(response_skeleton("m", tools=[], tool_choice="auto", parallel_tool_calls=parallel),
                              parallel_tool_calls=parallel)
    out = [*builder.start(), *(e for event in events for e in builder.feed(event))]
    return [msgspec.to_builtins(e) for e in out], msgspec.to_builtins(builder.response)


@settings(max_examples=300, deadline=None)
@given(turns(), st.booleans())
def test_the_stream_contract_holds(events: list[ChatEvent], parallel: bool) -> None:
    out, whole = stream(events, parallel)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    terminal = [e for e in out if e["type"] in ("response.completed", "response.incomplete", "response.failed")]
    assert terminal == [out[-1]] and out[-1]["response"] == whole
    final = whole["output"]
    added = [e for e in out if e["type"] == "response.output_item.added"]
    done = [e for e in out if e["type"] == "response.output_item.done"]
    assert [e["output_index"] for e in added] == [e["output_index"] for e in done] == list(range(len(final)))
    assert [e["item"] for e in done] == final
    for index, item in enumerate(final):
        mine = [e for e in out if e.get("output_index") == index]
        assert mine[0]["type"] == "response.output_item.added" and mine[-1]["type"] == "response.output_item.done"
        assert all(e.get("item_id", item["id"]) == item["id"] for e in mine)
        deltas = "".join(e["delta"] for e in mine if "delta" in e)
        if item["type"] == "function_call":
            assert deltas == item["arguments"]
        else:
            text = item["content"][0]["text"]
            assert deltas == text and text.strip()  # done = the deltas; no item of whitespace only
    if not parallel:
        assert sum(i["type"] == "function_call" for i in final) <= 1
    wanted = "".join(e.text for e in events if isinstance(e, ContentDelta)).strip()
    got = "".join(i["content"][0]["text"] for i in final if i["type"] == "message")
    assert got.replace(" ", "").replace("\n", "") == wanted.replace(" ", "").replace("\n", "")
