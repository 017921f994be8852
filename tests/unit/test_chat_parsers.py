"""The family parsers fed realistic raw outputs, whole and split at every possible point."""

from __future__ import annotations

import json
import random

import pytest

from llmux.chat.events import ContentDelta, ReasoningDelta, ToolCallArgs, ToolCallStart
from llmux.chat.families import parser_for

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
        },
    },
}
EDIT = {
    "type": "function",
    "function": {
        "name": "edit",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "lines": {"type": "array"}, "note": {"type": "string"}},
        },
    },
}
TOOLS = [WEATHER, EDIT]


def run(family: str, prompt: str, pieces: list[str]) -> list:
    parser = parser_for(family, prompt=prompt, tools=TOOLS)
    events = []
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.close()
    return events


def summary(events: list) -> list[tuple]:
    """Merge consecutive deltas of one kind; check ids' shape; decode arguments."""
    out: list[list] = []
    for e in events:
        if isinstance(e, (ContentDelta, ReasoningDelta)):
            kind = "content" if isinstance(e, ContentDelta) else "reasoning"
            if out and out[-1][0] == kind:
                out[-1][1] += e.text
            else:
                out.append([kind, e.text])
        elif isinstance(e, ToolCallStart):
            assert e.id.startswith("call_") and len(e.id) > 10
            out.append(["start", e.index, e.name])
        elif isinstance(e, ToolCallArgs):
            if out and out[-1][0] == "args" and out[-1][1] == e.index:
                out[-1][2] += e.text
            else:
                out.append(["args", e.index, e.text])
    return [("args", o[1], json.loads(o[2])) if o[0] == "args" else tuple(o) for o in out]


def splits(text: str) -> list[list[str]]:
    rng = random.Random(7)
    cuts = [sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, n))) for n in (3, 17, 60)]
    ways = [[text], list(text)]
    for c in cuts:
        ways.append([text[a:b] for a, b in zip([0, *c], [*c, len(text)])])
    return ways


def check(family: str, prompt: str, raw: str, expected: list[tuple]) -> None:
    for pieces in splits(raw):
        assert summary(run(family, prompt, pieces)) == expected, pieces[:5]


QWEN_THINK_PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
QWEN_NOTHINK_PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_qwen_reasoning_then_content() -> None:
    raw = "The user greets me.\nI should greet back.\n</think>\n\nHello! How can I help?<|im_end|>"
    check("qwen3.5", QWEN_THINK_PROMPT, raw, [
        ("reasoning", "The user greets me.\nI should greet back."),
        ("content", "Hello! How can I help?"),
    ])


def test_qwen_instruct_content_only() -> None:
    check("qwen3.5", QWEN_NOTHINK_PROMPT, "Hello there.<|im_end|>\n<|endoftext|>", [("content", "Hello there.")])


def test_qwen_one_tool_call_typed_from_schema() -> None:
    raw = (
        "Need weather.\n</think>\n\nLet me check.\n\n<tool_call>\n<function=get_weather>\n"
        "<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n"
        "<parameter=metric>\ntrue\n</parameter>\n</function>\n</tool_call><|im_end|>"
    )
    check("qwen3.5", QWEN_THINK_PROMPT, raw, [
        ("reasoning", "Need weather."),
        ("content", "Let me check."),
        ("start", 0, "get_weather"),
        ("args", 0, {"city": "Paris", "days": 3, "metric": True}),
    ])


def test_qwen_several_tool_calls_and_string_stays_string() -> None:
    raw = (
        "<tool_call>\n<function=get_weather>\n<parameter=city>\n1984\n</parameter>\n</function>\n</tool_call>\n"
        "<tool_call>\n<function=edit>\n<parameter=path>\na.py\n</parameter>\n"
        "<parameter=lines>\n[1, 2,\n</parameter>\n<parameter=note>\nline one\nline two\n</parameter>\n"
        "</function>\n</tool_call><|im_end|>"
    )
    check("qwen3.5", QWEN_NOTHINK_PROMPT, raw, [
        ("start", 0, "get_weather"),
        ("args", 0, {"city": "1984"}),
        ("start", 1, "edit"),
        ("args", 1, {"path": "a.py", "lines": [1, 2], "note": "line one\nline two"}),
    ])


def test_qwen_hermes_json_call_with_malformed_arguments() -> None:
    raw = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "days": 2</tool_call>'
    check("qwen3.5", QWEN_NOTHINK_PROMPT, raw, [("start", 0, "get_weather"), ("args", 0, {"city": "Rome", "days": 2})])


def test_qwen_truncated_tool_call_is_finished() -> None:
    raw = "<tool_call>\n<function=get_weather>\n<parameter=city>\nBer"
    check("qwen3.5", QWEN_NOTHINK_PROMPT, raw, [("start", 0, "get_weather"), ("args", 0, {"city": "Ber"})])


def test_qwen_model_opens_think_itself() -> None:
    raw = "<think>\nhmm\n</think>\n\nok<|im_end|>"
    check("qwen3.5", "<|im_start|>assistant\n", raw, [("reasoning", "hmm"), ("content", "ok")])


def test_qwen_lone_angle_brackets_are_content() -> None:
    raw = "a < b and <tool is not a tag <|im_end|>"
    check("qwen3.5", QWEN_NOTHINK_PROMPT, raw, [("content", "a < b and <tool is not a tag")])


HARMONY_PROMPT = "<|start|>user<|message|>hi<|end|><|start|>assistant"


def test_harmony_reasoning_then_final() -> None:
    raw = "<|channel|>analysis<|message|>User says hi.<|end|><|start|>assistant<|channel|>final<|message|>Hi! 👋<|return|>"
    check("gpt-oss", HARMONY_PROMPT, raw, [("reasoning", "User says hi."), ("content", "Hi! 👋")])


def test_harmony_tool_call_recipient_after_channel() -> None:
    raw = (
        "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
        'to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris","days":3}<|call|>'
    )
    check("gpt-oss", HARMONY_PROMPT, raw, [
        ("reasoning", "Need weather."),
        ("start", 0, "get_weather"),
        ("args", 0, {"city": "Paris", "days": 3}),
    ])


def test_harmony_several_calls_recipient_before_channel_and_malformed_json() -> None:
    raw = (
        ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Oslo",}<|call|>'
        "<|start|>assistant to=functions.edit<|channel|>commentary json<|message|>{'path': 'x.py', 'lines': [1<|call|>"
    )
    check("gpt-oss", HARMONY_PROMPT, raw, [
        ("start", 0, "get_weather"),
        ("args", 0, {"city": "Oslo"}),
        ("start", 1, "edit"),
        ("args", 1, {"path": "x.py", "lines": [1]}),
    ])


def test_harmony_commentary_preamble_is_content() -> None:
    raw = "<|channel|>commentary<|message|>Checking…<|end|><|start|>assistant<|channel|>final<|message|>Done.<|return|>"
    check("gpt-oss", HARMONY_PROMPT, raw, [("content", "Checking…Done.")])


def test_harmony_off_format_text_is_not_lost() -> None:
    check("gpt-oss", HARMONY_PROMPT, "just words", [("content", "just words")])


def test_chatml_plain() -> None:
    check("chatml", "<|im_start|>assistant\n", "\nParis is the capital.<|im_end|>ignored", [("content", "Paris is the capital.")])


@pytest.mark.parametrize("family", ["qwen3.5", "gpt-oss", "chatml"])
def test_tool_call_count(family: str) -> None:
    parser = parser_for(family, prompt="", tools=TOOLS)
    parser.feed("plain")
    parser.close()
    assert parser.calls == 0


CHATML_PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_chatml_hermes_tool_calls() -> None:
    raw = (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>\n'
        '<tool_call>\n{"arguments": {"path": "a.py"}, "name": "edit"}\n</tool_call><|im_end|>'
    )
    check("chatml", CHATML_PROMPT, raw, [
        ("content", "Let me check."),
        ("start", 0, "get_weather"),
        ("args", 0, {"city": "Paris", "days": 3}),
        ("start", 1, "edit"),
        ("args", 1, {"path": "a.py"}),
    ])


def test_chatml_hermes_malformed_and_truncated_calls() -> None:
    check("chatml", CHATML_PROMPT, '<tool_call>{"name": "edit", "arguments": {"path": "x", "lines": [1,</tool_call></s>',
          [("start", 0, "edit"), ("args", 0, {"path": "x", "lines": [1]})])
    check("chatml", CHATML_PROMPT, '<tool_call>\n{"name": "get_we\\u0061ther", "arguments": {"city": "Os',
          [("start", 0, "get_weather"), ("args", 0, {"city": "Os"})])


def test_chatml_hermes_text_that_is_not_a_call_stays_visible() -> None:
    check("chatml", CHATML_PROMPT, "See <tool_call>not json</tool_call> <think>x</think><|im_end|>",
          [("content", "See not json <think>x</think>")])


def test_chatml_name_is_emitted_before_the_arguments_end() -> None:
    parser = parser_for("chatml", prompt=CHATML_PROMPT, tools=TOOLS)
    events = parser.feed('<tool_call>\n{"name": "get_weather", "arguments": {"ci')
    assert [type(e).__name__ for e in events] == ["ToolCallStart"] and events[0].name == "get_weather"


def test_chatml_without_tools_shows_tool_markup_as_text() -> None:
    parser = parser_for("chatml", prompt=CHATML_PROMPT, tools=None)
    events = [*parser.feed('<tool_call>{"name": "x"}</tool_call>'), *parser.close()]
    assert summary(events) == [("content", '<tool_call>{"name": "x"}</tool_call>')] and parser.calls == 0


def test_chatml_hermes_name_with_a_bad_escape_is_kept_as_written() -> None:
    check("chatml", CHATML_PROMPT, '<tool_call>{"name": "ed\\xit", "arguments": {}}</tool_call>',
          [("start", 0, "ed\\xit"), ("args", 0, {})])
