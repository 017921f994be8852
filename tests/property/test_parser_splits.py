"""Property: however the runtime splits its output into pieces, a parser emits the same
content, reasoning and tool calls as when fed the whole text at once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_chat_parsers import HARMONY_PROMPT, QWEN_NOTHINK_PROMPT, QWEN_THINK_PROMPT, run, summary

OUTPUTS = [
    ("qwen3.5", QWEN_THINK_PROMPT, "Hmm <b>.\n</think>\n\nHi < there <tool_call>\n<function=get_weather>\n"
     "<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>\n"
     "<tool_call>\n<function=edit>\n<parameter=lines>\n[1,\n</parameter>\n</function>\n</tool_call><|im_end|>"),
    ("qwen3.5", QWEN_NOTHINK_PROMPT, "Plain <|im_start|> text with </think> stray tags.<|im_end|>"),
    ("gpt-oss", HARMONY_PROMPT, "<|channel|>analysis<|message|>a<|b|>c<|end|><|start|>assistant<|channel|>commentary "
     'to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo", "days": 3<|call|>'),
    ("gpt-oss", HARMONY_PROMPT, "<|channel|>final<|message|>Done <|with|> tokens.<|return|>"),
    ("chatml", "", "Hello <|im_en world<|im_end|>"),
    ("chatml", "", 'Sure <tool_ <tool_call>\n{"name": "get_weather", "arguments": {"city": "Par\\"is", "days": 2}}\n'
     '</tool_call>\n<tool_call>{"name": "edit", "arguments": "{\\"path\\": 1"}</tool_call><|im_end|>'),
]


@st.composite
def split_output(draw: st.DrawFn) -> tuple[str, str, str, list[str]]:
    family, prompt, raw = draw(st.sampled_from(OUTPUTS))
    cuts = sorted(draw(st.sets(st.integers(1, len(raw) - 1), max_size=40)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    return family, prompt, raw, pieces


@settings(max_examples=300, deadline=None)
@given(split_output())
def test_any_split_gives_the_same_events(case: tuple[str, str, str, list[str]]) -> None:
    family, prompt, raw, pieces = case
    assert summary(run(family, prompt, pieces)) == summary(run(family, prompt, [raw]))
