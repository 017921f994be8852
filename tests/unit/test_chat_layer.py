"""The runtime-independent chat layer: behaviours, message conversion, templates, stops,
arguments, and the shared chat pipeline (``ChatRun``, fed plain text pieces by a fake engine)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from llmux.chat.arguments import json_arguments, typed_value, xml_arguments
from llmux.chat.behaviour import apply_to_messages, template_kwargs
from llmux.chat.events import ChatEvent, ChatJob, ContentDelta, Finish, Usage
from llmux.chat.images import image_bytes
from llmux.chat.messages import template_input
from llmux.chat.pipeline import ChatRun
from llmux.chat.stops import StopScanner
from llmux.chat.template import render
from llmux.engines.base import ChatTemplate, Prompted, SamplingParams, TextJob
from llmux.engines.text import Item, SerialTextEngine, completion_budget
from llmux.protocol.chat import Message
from llmux.protocol.errors import InvalidRequest
from llmux.registry.config import Behaviour


def messages(dicts: list[dict[str, Any]]) -> list[Message]:
    return msgspec.convert(dicts, list[Message])


def test_qwen_thinking_switch_is_a_template_kwarg() -> None:
    assert template_kwargs("qwen3.5", Behaviour(thinking=False), "") == {"enable_thinking": False}
    assert template_kwargs("qwen3.5", Behaviour(), "") == {}


def test_gpt_oss_level_goes_to_a_template_that_knows_it() -> None:
    source = "Reasoning: {{ reasoning_effort }}"
    assert template_kwargs("gpt-oss", Behaviour(reasoning_effort="high"), source) == {"reasoning_effort": "high"}
    messages = [{"role": "system", "content": "Be brief."}]
    assert apply_to_messages("gpt-oss", Behaviour(reasoning_effort="high"), source, messages) == messages


def test_gpt_oss_level_is_prepended_when_the_template_ignores_it() -> None:
    b = Behaviour(reasoning_effort="low")
    with_system = apply_to_messages("gpt-oss", b, "{{ messages }}", [{"role": "system", "content": "Be brief."}])
    assert with_system == [{"role": "system", "content": "Reasoning: low\n\nBe brief."}]
    without = apply_to_messages("gpt-oss", b, "{{ messages }}", [{"role": "user", "content": "hi"}])
    assert without[0] == {"role": "system", "content": "Reasoning: low"}


def test_messages_for_templates() -> None:
    converted = template_input(
        messages([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "name": None},
            {"role": "assistant", "content": None, "reasoning_content": "think",
             "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x": 1,'}}]},
        ]),
        family="gpt-oss",
        image_part=None,
    )
    user, assistant = converted
    assert user == {"role": "user", "content": "ab"}
    assert assistant["content"] == "" and assistant["thinking"] == "think"
    assert assistant["tool_calls"][0]["function"]["arguments"] == {"x": 1}


def test_remote_image_urls_are_never_fetched_by_a_backend() -> None:
    # Engines only ever get decoded bytes; the decoding step (default policy) refuses remote URLs.
    (message,) = messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://10.0.0.1/x.png"}}]}])
    with pytest.raises(InvalidRequest):
        image_bytes(message.content[0].image_url.url)


def test_gguf_template_rendering_matches_transformers_conventions() -> None:
    source = "{% for m in messages %}{{ m.content | tojson }}{% endfor %}{% if add_generation_prompt %}{{ bos_token }}>{% endif %}"
    assert render(source, [{"role": "user", "content": "é"}], tools=None, bos_token="<s>") == '"é"<s>>'
    with pytest.raises(InvalidRequest):
        render("{{ raise_exception('no system role') }}", [], tools=None)


def test_stop_strings_across_pieces() -> None:
    scanner = StopScanner(("END",))
    assert scanner.feed("abcE") == "abc"
    assert scanner.feed("N") == ""
    assert scanner.feed("Dxyz") == "" and scanner.hit


def test_arguments_typed_and_repaired() -> None:
    assert json.loads(json_arguments('{"a": [1, 2')) == {"a": [1, 2]}
    assert json_arguments("") == "{}"
    assert typed_value("7", {"type": "integer"}) == 7
    assert typed_value("7", {"type": "string"}) == "7"
    assert typed_value("hello", None) == "hello"
    assert typed_value("{'k': 1}", {"type": "object"}) == {"k": 1}
    assert json.loads(xml_arguments([("n", "2.5")], [{"function": {"name": "f", "parameters": {
        "properties": {"n": {"type": "number"}}}}}], "f")) == {"n": 2.5}


class ScriptedEngine(SerialTextEngine):
    """A text engine that reports a 5-token prompt and yields the scripted pieces."""

    def __init__(self, texts: list[str | None], max_tokens: int) -> None:
        super().__init__("scripted")
        self.texts = texts
        self.max_tokens = max_tokens

    def template(self) -> ChatTemplate:
        return ChatTemplate(source="{% for m in messages %}{{ m.content }}{% endfor %}")

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        yield Prompted(5, self.max_tokens)
        yield from self.texts


def _run(texts: list[str | None], max_tokens: int = 100, stops: tuple[str, ...] = ()) -> list[ChatEvent]:
    job = ChatJob(messages=messages([{"role": "user", "content": "hi"}]), params=SamplingParams(stop=stops))
    run = ChatRun(ScriptedEngine(texts, max_tokens), None, job)  # family None: the ChatML parser

    async def drain() -> list[ChatEvent]:
        return [event async for batch in run.events() for event in batch]

    return asyncio.run(drain())


def test_generation_finish_reasons() -> None:
    assert _run(["a", "b", None])[-1] == Finish("stop", Usage(5, 3))
    assert _run(["a", "b", "c"], max_tokens=2)[-1].reason == "length"
    stopped = _run(["he", "llo", " wor", "ld"], stops=("lo w",))
    assert "".join(e.text for e in stopped if isinstance(e, ContentDelta)) == "hel"
    assert stopped[-1].reason == "stop"


def test_completion_budget() -> None:
    assert completion_budget(32000, 100, 4096) == 3996
    assert completion_budget(None, 100, 4096) == 3996
    assert completion_budget(10, 100, 4096) == 10
    with pytest.raises(InvalidRequest):
        completion_budget(10, 4096, 4096)


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_remote_images_are_fetched_only_when_enabled() -> None:
    import http.server

    from llmux.chat.fetch import networks
    from llmux.chat.images import ImagePolicy

    lan = networks(["127.0.0.1/32"])  # loopback plays a LAN image host: allowed explicitly
    png = _png()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cat.png"
    try:
        with pytest.raises(InvalidRequest):
            image_bytes(url)  # off by default
        assert image_bytes(url, ImagePolicy(remote=True, allow=lan)) == png
        with pytest.raises(InvalidRequest):
            image_bytes(url, ImagePolicy(remote=True, allow=lan, max_bytes=10))
    finally:
        server.shutdown()


def test_forced_tool_call_prefixes() -> None:
    from llmux.chat.tool_choice import forced_prefix

    named = {"type": "function", "function": {"name": "get_weather"}}
    assert forced_prefix("qwen3.5", "auto", "p", True) == ""
    assert forced_prefix("qwen3.5", named, "p", False) == ""
    assert forced_prefix("qwen3.5", named, "...assistant\n", True) == "<tool_call>\n<function=get_weather>\n"
    assert forced_prefix("qwen3.5", "required", "...assistant\n<think>\n", True) == "\n</think>\n\n<tool_call>\n<function="
    assert forced_prefix("gpt-oss", named, "", True) == "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
    assert forced_prefix(None, named, "", True) == ""  # a family without a tool-call format


def test_gpt_oss_tool_turn_keeps_text_or_reasoning_not_both() -> None:
    call = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    both = template_input(messages([{"role": "assistant", "content": "checking", "reasoning_content": "r", "tool_calls": call}]),
                          family="gpt-oss", image_part=None)[0]
    assert both["content"] == "checking" and "thinking" not in both
    only = template_input(messages([{"role": "assistant", "content": "", "reasoning_content": "r", "tool_calls": call}]),
                          family="gpt-oss", image_part=None)[0]
    assert only["thinking"] == "r"


def test_hermes_tools_written_for_a_chatml_template_that_knows_none() -> None:
    from llmux.chat.prompt import render_prompt
    from tests.fixtures.tiny_models import TEMPLATES

    tool = {"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}
    call = [{"id": "c1", "type": "function", "function": {"name": "read", "arguments": '{"path": "a"}'}}]
    history = messages([
        {"role": "user", "content": "read a and b"},
        {"role": "assistant", "content": "Reading.", "tool_calls": call},
        {"role": "tool", "tool_call_id": "c1", "content": "A!"},
        {"role": "tool", "tool_call_id": "c2", "content": "B!"},
    ])
    template = ChatTemplate(source=(TEMPLATES / "smollm2.jinja").read_text())
    prompt = render_prompt(ChatJob(messages=history, tools=[tool]), "chatml", template).prompt
    assert prompt.startswith("<|im_start|>system\n# Tools\n") and json.dumps(tool) in prompt
    assert 'Reading.\n<tool_call>\n{"name": "read", "arguments": {"path": "a"}}\n</tool_call><|im_end|>' in prompt
    assert "<|im_start|>user\n<tool_response>\nA!\n</tool_response>\n<tool_response>\nB!\n</tool_response><|im_end|>" in prompt
    # A system prompt keeps its text; without tools nothing is added.
    plain = render_prompt(ChatJob(messages=messages([{"role": "system", "content": "Be brief."}])), "chatml", template)
    assert plain.prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    # A template that writes tools itself gets the conversation as it is.
    own = ChatTemplate(source="{% for t in tools %}{{ t.function.name }}{% endfor %}|{{ messages[0].role }}")
    assert render_prompt(ChatJob(messages=history, tools=[tool]), "chatml", own).prompt == "read|user"


def test_forced_hermes_call_is_prefilled_and_parsed() -> None:
    from llmux.chat.prompt import render_prompt
    from llmux.chat.tool_choice import forced_prefix

    named = {"type": "function", "function": {"name": "read"}}
    assert forced_prefix("chatml", named, "", True) == '<tool_call>\n{"name": "read", "arguments": '
    assert forced_prefix("chatml", "required", "", True) == '<tool_call>\n{"name": "'
    tool = {"type": "function", "function": {"name": "read"}}
    job = ChatJob(messages=messages([{"role": "user", "content": "hi"}]), tools=[tool], tool_choice=named)
    rendered = render_prompt(job, "chatml", ChatTemplate(source="P:"))
    assert rendered.prompt.endswith('{"name": "read", "arguments": ')
    assert [(type(e).__name__, getattr(e, "name", None)) for e in rendered.preamble] == [("ToolCallStart", "read")]
    events = [*rendered.parser.feed('{"path": "x"}}\n</tool_call>'), *rendered.parser.close()]
    assert [json.loads(e.text) for e in events if hasattr(e, "text")] == [{"path": "x"}]


def test_reasoning_tokens_are_counted_while_the_parser_reasons() -> None:
    job = ChatJob(messages=messages([{"role": "user", "content": "hi"}]))
    pieces = ["Hmm", ", ", "<", "/think>", "\n\n", "Hi", "!", None]
    engine = ScriptedEngine(pieces, 100)
    engine.template = lambda: ChatTemplate(source="<|im_start|>assistant\n<think>\n")  # type: ignore[method-assign]
    run = ChatRun(engine, "qwen3.5", job)

    async def drain() -> list[ChatEvent]:
        return [event async for batch in run.events() for event in batch]

    finish = asyncio.run(drain())[-1]
    assert isinstance(finish, Finish)
    # "Hmm", ", ", "<" (held back), "/think>" and "\n\n" (nothing released yet) are reasoning.
    assert finish.usage == Usage(5, 8, reasoning_tokens=5)
