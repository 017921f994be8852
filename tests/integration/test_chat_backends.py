"""Both chat runtimes driven through the ChatBackend protocol on tiny random models:
rendering with behaviours, the event contract, usage, max_tokens capping, stop, seed, cancel."""

from __future__ import annotations

import base64
import json
import io
import threading
from typing import Any

import pytest

from llmux.backends.base import ChatJob, ContentDelta, Finish, ReasoningDelta, SamplingParams, ToolCallStart
from llmux.errors import InvalidRequest
from llmux.registry.config import Behaviour
from tests.fixtures.chat_backends import gpt_oss_tf, qwen_gguf, qwen_tf, tiny_dir, vision_gguf  # noqa: F401

pytestmark = pytest.mark.slow

HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello the weather"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def job(messages: list[dict[str, Any]] = HELLO, **params: Any) -> ChatJob:
    behaviour = params.pop("behaviour", Behaviour())
    tools = params.pop("tools", None)
    return ChatJob(messages=messages, tools=tools, params=SamplingParams(**params), behaviour=behaviour)


def drain(backend: Any, j: ChatJob, cancel: threading.Event | None = None) -> list[Any]:
    events = list(backend.chat(j, cancel or threading.Event()))
    finishes = [e for e in events if isinstance(e, Finish)]
    assert len(finishes) == 1 and events[-1] is finishes[0]
    return events


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, (ContentDelta, ReasoningDelta)))


@pytest.fixture(params=["qwen_tf", "qwen_gguf"])
def qwen(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


# ---- virtual behaviours in the rendered prompt ---------------------------------------------


def test_qwen_instruct_and_thinking_render_differently(qwen: Any) -> None:
    instruct, _ = qwen.render(job(behaviour=Behaviour(thinking=False)))
    thinking, _ = qwen.render(job(behaviour=Behaviour(thinking=True)))
    default, _ = qwen.render(job())
    assert instruct.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")
    assert default == thinking  # Qwen3.5 thinks unless told otherwise


@pytest.mark.parametrize("level", ["low", "medium", "high"])
def test_gpt_oss_reasoning_level_in_system_message(gpt_oss_tf: Any, level: str) -> None:
    prompt, _ = gpt_oss_tf.render(job(behaviour=Behaviour(reasoning_effort=level)))
    system = prompt.split("<|end|>", 1)[0]
    assert f"Reasoning: {level}" in system
    assert "# Instructions\n\nBe brief." in prompt  # the client's system prompt stays the developer's


def test_tools_and_history_render_in_model_format(qwen: Any) -> None:
    history = [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": None, "reasoning_content": "need the tool",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    prompt, _ = qwen.render(job(history, tools=[TOOL]))
    assert '"name": "get_weather"' in prompt
    assert "<function=get_weather>\n<parameter=city>\nParis\n</parameter>" in prompt
    assert "<tool_response>\nsunny\n</tool_response>" in prompt


def test_gpt_oss_history_arguments_are_not_double_encoded(gpt_oss_tf: Any) -> None:
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c", "content": "rain"},
    ]
    prompt, _ = gpt_oss_tf.render(job(history, tools=[TOOL]))
    assert 'to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Oslo"}<|call|>' in prompt


def test_text_parts_are_joined_for_text_models(gpt_oss_tf: Any) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]}]
    prompt, _ = gpt_oss_tf.render(job(parts))
    assert "<|start|>user<|message|>one two<|end|>" in prompt


# ---- generation contract ---------------------------------------------------------------------


def test_generates_and_counts_usage(qwen: Any) -> None:
    events = drain(qwen, job(max_tokens=12, seed=3))
    finish = events[-1]
    assert finish.reason in ("length", "stop")
    assert 0 < finish.usage.completion_tokens <= 12
    assert finish.usage.prompt_tokens > 10


def test_max_tokens_is_capped_to_the_context(qwen_gguf: Any) -> None:
    # OpenCode asks for 32,000 whatever the model: fill the context instead of failing.
    events = drain(qwen_gguf, job(max_tokens=32000, seed=1, temperature=0))
    usage = events[-1].usage
    assert usage.prompt_tokens + usage.completion_tokens <= 512
    if events[-1].reason == "length":
        assert usage.prompt_tokens + usage.completion_tokens == 512


def test_max_tokens_capped_on_transformers(gpt_oss_tf: Any) -> None:
    long = [{"role": "user", "content": "hello the weather " * 40}]  # leaves little room in 384
    prompt_tokens = len(gpt_oss_tf.tokenizer(gpt_oss_tf.render(job(long))[0], add_special_tokens=False).input_ids)
    assert 250 < prompt_tokens < 384
    events = drain(gpt_oss_tf, job(long, max_tokens=32000, seed=5))
    usage = events[-1].usage
    assert usage.prompt_tokens == prompt_tokens
    assert usage.prompt_tokens + usage.completion_tokens <= 384


def test_prompt_longer_than_context_is_a_clear_400(gpt_oss_tf: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        gpt_oss_tf.chat(job([{"role": "user", "content": "hello the weather " * 200}]), threading.Event())
    assert info.value.code == "context_length_exceeded"


def test_seed_makes_sampling_repeatable(qwen: Any) -> None:
    a = text_of(drain(qwen, job(max_tokens=16, seed=11, temperature=1.0)))
    b = text_of(drain(qwen, job(max_tokens=16, seed=11, temperature=1.0)))
    assert a == b


def test_stop_string_cuts_the_output(qwen_gguf: Any) -> None:
    plain = drain(qwen_gguf, job(max_tokens=60, temperature=0))
    text = text_of(plain)
    stop = text.strip()[5:8]
    assert stop and len(text.strip()) > 10
    cut = drain(qwen_gguf, job(max_tokens=60, temperature=0, stop=(stop,)))
    assert stop not in text_of(cut)
    assert cut[-1].reason == "stop"
    assert cut[-1].usage.completion_tokens < plain[-1].usage.completion_tokens


def test_cancel_stops_within_a_token(qwen: Any) -> None:
    cancel = threading.Event()
    seen_at_cancel = None
    events = []
    for event in qwen.chat(job(max_tokens=400, seed=2, temperature=1.0), cancel):
        events.append(event)
        if seen_at_cancel is None and not isinstance(event, Finish):
            cancel.set()
            seen_at_cancel = len(events)
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    assert seen_at_cancel is not None
    # The loop checks the flag after every token: far fewer than the 400 asked for were made.
    assert finish.usage.completion_tokens < 100


def test_closing_the_stream_stops_the_generate_thread(qwen_tf: Any) -> None:
    stream = qwen_tf.chat(job(max_tokens=500, seed=2), threading.Event())
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("generate-")]


# ---- vision --------------------------------------------------------------------------------


def png_data_url(size: tuple[int, int] = (48, 40)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_image_reaches_the_qwen_processor(qwen_tf: Any) -> None:
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "what colour?"},
        {"type": "image_url", "image_url": {"url": png_data_url()}},
    ]}]
    prompt, images = qwen_tf.render(job(messages))
    assert "<|vision_start|><|image_pad|><|vision_end|>" in prompt and len(images) == 1
    with_image = drain(qwen_tf, job(messages, max_tokens=4, seed=1))
    text_only = drain(qwen_tf, job([{"role": "user", "content": "what colour?"}], max_tokens=4, seed=1))
    # The processor expanded the one placeholder into the image's patch tokens.
    assert with_image[-1].usage.prompt_tokens > text_only[-1].usage.prompt_tokens + 1


def test_broken_image_is_a_400(qwen_tf: Any) -> None:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    with pytest.raises(InvalidRequest):
        qwen_tf.chat(job(messages), threading.Event())


def test_no_tool_call_events_from_plain_output(gpt_oss_tf: Any) -> None:
    events = drain(gpt_oss_tf, job(max_tokens=8, seed=4))
    assert not [e for e in events if isinstance(e, ToolCallStart)]


def test_gguf_without_mmproj_refuses_images(qwen_gguf: Any) -> None:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_data_url()}}]}]
    with pytest.raises(InvalidRequest) as info:
        qwen_gguf.chat(job(messages), threading.Event())
    assert info.value.code == "vision_not_supported"


def test_a_file_that_is_not_an_mmproj_fails_the_load_cleanly(tiny_dir: Any) -> None:  # noqa: F811
    from llmux.backends.factory import create_backend
    from llmux.errors import ModelLoadFailed
    from tests.fixtures.tiny_models import build_gguf, physical

    weights = build_gguf(tiny_dir / "mm-main.gguf")
    registry, spec = physical(weights, backend="llamacpp", family="qwen3.5", vision=True, n_gpu_layers=0,
                              threads=1, n_ctx=256, mmproj=str(build_gguf(tiny_dir / "not-an-mmproj.gguf")))
    backend = create_backend(spec, registry)
    with pytest.raises(ModelLoadFailed):
        backend.load()
    assert backend.llm is None and backend.vision is None


def test_image_reaches_llama_cpp_through_mtmd(vision_gguf: Any) -> None:
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "what colour?"},
        {"type": "image_url", "image_url": {"url": png_data_url((50, 30))}},
    ]}]
    prompt, images = vision_gguf.render(job(messages))
    assert vision_gguf.vision.marker in prompt and len(images) == 1
    with_image = drain(vision_gguf, job(messages, max_tokens=6, seed=1))
    text_only = drain(vision_gguf, job([{"role": "user", "content": "what colour?"}], max_tokens=6, seed=1))
    # 32x32 pixels in 8x8 patches: the image took 16 positions in the context.
    assert with_image[-1].usage.prompt_tokens == text_only[-1].usage.prompt_tokens + 16
    again = drain(vision_gguf, job(messages, max_tokens=6, seed=1))
    assert text_of(again) == text_of(with_image)  # no stale image positions reused from the cache


@pytest.mark.parametrize("name", ["qwen_gguf", "qwen_tf", "gpt_oss_tf"])
def test_named_tool_choice_forces_that_call(request: pytest.FixtureRequest, name: str) -> None:
    backend = request.getfixturevalue(name)
    forced = ChatJob(messages=HELLO, tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}},
                     params=SamplingParams(max_tokens=6, seed=1), behaviour=Behaviour())
    events = drain(backend, forced)
    assert events[0] == ToolCallStart(index=0, id=events[0].id, name="get_weather")
    assert events[-1].reason == "tool_calls"
    args = "".join(e.text for e in events if type(e).__name__ == "ToolCallArgs")
    assert isinstance(json.loads(args), dict)  # whatever a random model wrote, valid JSON arguments


def test_a_broken_checkpoint_fails_the_load_cleanly(tmp_path: Any) -> None:
    from llmux.backends.factory import create_backend
    from tests.fixtures.tiny_models import physical

    (tmp_path / "config.json").write_text("{not json")
    registry, spec = physical(tmp_path, backend="transformers", family="qwen3.5", device="cpu")
    backend = create_backend(spec, registry)
    with pytest.raises(Exception):
        backend.load()
    assert backend.model is None and backend.tokenizer is None
