"""Both chat runtimes driven as text engines through the chat pipeline (``render_prompt``,
``ChatRun``) on tiny random models: rendering with behaviours, the event contract, usage,
max_tokens capping, stop, seed, cancel."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from llmux.chat.events import ChatJob, ContentDelta, Finish, ReasoningDelta, ToolCallStart
from llmux.chat.images import image_bytes
from llmux.chat.messages import image_parts
from llmux.chat.pipeline import ChatRun
from llmux.chat.prompt import render_prompt
from llmux.engines.base import Prompted, SamplingParams
from llmux.protocol.chat import Message
from llmux.protocol.errors import InvalidRequest
from llmux.registry.config import Behaviour
from tests.fixtures.chat_backends import (  # noqa: F401
    gpt_oss_tf,
    qwen_gguf,
    qwen_tf,
    tiny_dir,
    vision_gguf,
    vision_gguf_batched,
)

pytestmark = pytest.mark.slow

HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello the weather"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def job(messages: list[dict[str, Any]] = HELLO, **params: Any) -> ChatJob:
    """The job the chat service would build: typed messages, their images decoded (a bad image
    is refused here, before any engine sees it)."""
    behaviour = params.pop("behaviour", Behaviour())
    tools = params.pop("tools", None)
    tool_choice = params.pop("tool_choice", None)
    typed = msgspec.convert(messages, list[Message])
    images = tuple(image_bytes(part.image_url.url, param=param) for param, part in image_parts(typed))
    return ChatJob(messages=typed, tools=tools, tool_choice=tool_choice, params=SamplingParams(**params),
                   behaviour=behaviour, images=images)


def render(engine: Any, j: ChatJob) -> str:
    """The prompt the engine would be given for ``j``."""
    return render_prompt(j, engine.spec.family, engine.template()).prompt


def drain(engine: Any, j: ChatJob) -> list[Any]:
    """One whole chat turn through the pipeline, its events flattened."""

    async def turn() -> list[Any]:
        run = ChatRun(engine, engine.spec.family, j)
        try:
            return [event async for batch in run.events() for event in batch]
        finally:
            await run.stopped  # the engine's thread is done (also after a failure) before the loop closes

    events = asyncio.run(turn())
    finishes = [e for e in events if isinstance(e, Finish)]
    assert len(finishes) == 1 and events[-1] is finishes[0]
    return events


@contextlib.contextmanager
def counting_tokens(engine: Any) -> Iterator[list[int]]:
    """How many pieces the engine's own generator made (not just those the pipeline read)."""
    made = [0]
    generate = engine.generate

    def counted(text_job: Any, cancel: threading.Event) -> Iterator[Any]:
        for item in generate(text_job, cancel):
            if not isinstance(item, Prompted):
                made[0] += 1
            yield item

    engine.generate = counted
    try:
        yield made
    finally:
        del engine.generate


def generate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("generate-")]


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, (ContentDelta, ReasoningDelta)))


@pytest.fixture(params=["qwen_tf", "qwen_gguf"])
def qwen(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


# ---- virtual behaviours in the rendered prompt ---------------------------------------------


def test_qwen_instruct_and_thinking_render_differently(qwen: Any) -> None:
    instruct = render(qwen, job(behaviour=Behaviour(thinking=False)))
    thinking = render(qwen, job(behaviour=Behaviour(thinking=True)))
    default = render(qwen, job())
    assert instruct.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")
    assert default == thinking  # Qwen3.5 thinks unless told otherwise


@pytest.mark.parametrize("level", ["low", "medium", "high"])
def test_gpt_oss_reasoning_level_in_system_message(gpt_oss_tf: Any, level: str) -> None:
    prompt = render(gpt_oss_tf, job(behaviour=Behaviour(reasoning_effort=level)))
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
    prompt = render(qwen, job(history, tools=[TOOL]))
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
    prompt = render(gpt_oss_tf, job(history, tools=[TOOL]))
    assert 'to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Oslo"}<|call|>' in prompt


def test_text_parts_are_joined_for_text_models(gpt_oss_tf: Any) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]}]
    prompt = render(gpt_oss_tf, job(parts))
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
    prompt_tokens = len(gpt_oss_tf.tokenizer(render(gpt_oss_tf, job(long)), add_special_tokens=False).input_ids)
    assert 250 < prompt_tokens < 384
    events = drain(gpt_oss_tf, job(long, max_tokens=32000, seed=5))
    usage = events[-1].usage
    assert usage.prompt_tokens == prompt_tokens
    assert usage.prompt_tokens + usage.completion_tokens <= 384


def test_prompt_longer_than_context_is_a_clear_400(gpt_oss_tf: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        drain(gpt_oss_tf, job([{"role": "user", "content": "hello the weather " * 200}]))
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


async def test_cancel_stops_within_a_token(qwen: Any) -> None:
    # Cancelling is leaving the event stream: no Finish comes, the engine stops.
    seen_at_cancel = None
    events: list[Any] = []
    with counting_tokens(qwen) as made:
        run = ChatRun(qwen, qwen.spec.family, job(max_tokens=400, seed=2, temperature=1.0))
        async with contextlib.aclosing(run.events()) as stream:
            async for batch in stream:
                events.extend(batch)
                if any(not isinstance(e, Finish) for e in batch):
                    seen_at_cancel = len(events)
                    break
        # Leaving the stream has set the cancel flag; how far the thread got by now depends on
        # the machine's speed, so the bound is on what it makes *after* the flag, not before.
        made_at_cancel = made[0]
        await run.stopped
    assert run.finished is None and not [e for e in events if isinstance(e, Finish)]
    assert seen_at_cancel is not None
    # The producer checks the flag between tokens: at most the token in flight follows it.
    assert made[0] <= made_at_cancel + 1
    assert made[0] < 400


async def test_closing_the_stream_stops_the_generate_thread(qwen_tf: Any) -> None:
    run = ChatRun(qwen_tf, qwen_tf.spec.family, job(max_tokens=500, seed=2))
    stream = run.events()
    await stream.__anext__()
    await stream.aclose()
    await run.stopped  # resolves once the engine's thread is done with the job
    for thread in generate_threads():
        thread.join(timeout=5)  # it may still be returning from its last line
    assert not generate_threads()


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
    with_picture = job(messages)
    prompt, images = render(qwen_tf, with_picture), with_picture.images
    assert "<|vision_start|><|image_pad|><|vision_end|>" in prompt and len(images) == 1
    with_image = drain(qwen_tf, job(messages, max_tokens=4, seed=1))
    text_only = drain(qwen_tf, job([{"role": "user", "content": "what colour?"}], max_tokens=4, seed=1))
    # The processor expanded the one placeholder into the image's patch tokens.
    assert with_image[-1].usage.prompt_tokens > text_only[-1].usage.prompt_tokens + 1


def test_broken_image_is_a_400(qwen_tf: Any) -> None:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    with pytest.raises(InvalidRequest):  # decoding the image, before the lease
        drain(qwen_tf, job(messages))


def test_no_tool_call_events_from_plain_output(gpt_oss_tf: Any) -> None:
    events = drain(gpt_oss_tf, job(max_tokens=8, seed=4))
    assert not [e for e in events if isinstance(e, ToolCallStart)]


def test_gguf_without_mmproj_refuses_images(qwen_gguf: Any) -> None:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_data_url()}}]}]
    with pytest.raises(InvalidRequest) as info:
        drain(qwen_gguf, job(messages))
    assert info.value.code == "vision_not_supported"


def test_a_file_that_is_not_an_mmproj_fails_the_load_cleanly(tiny_dir: Any) -> None:  # noqa: F811
    from llmux.engines.factory import create_engine
    from llmux.protocol.errors import ModelLoadFailed
    from tests.fixtures.tiny_models import build_gguf, physical

    weights = build_gguf(tiny_dir / "mm-main.gguf")
    registry, spec = physical(weights, backend="llamacpp", family="qwen3.5", vision=True, n_gpu_layers=0,
                              threads=1, n_ctx=256, mmproj=str(build_gguf(tiny_dir / "not-an-mmproj.gguf")))
    backend = create_engine(spec, registry)
    with pytest.raises(ModelLoadFailed):
        backend.load()
    assert backend.llm is None and backend.vision is None


def test_image_reaches_llama_cpp_through_mtmd(vision_gguf: Any) -> None:
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "what colour?"},
        {"type": "image_url", "image_url": {"url": png_data_url((50, 30))}},
    ]}]
    with_picture = job(messages)
    prompt, images = render(vision_gguf, with_picture), with_picture.images
    assert vision_gguf.vision.marker in prompt and len(images) == 1
    with_image = drain(vision_gguf, job(messages, max_tokens=6, seed=1))
    text_only = drain(vision_gguf, job([{"role": "user", "content": "what colour?"}], max_tokens=6, seed=1))
    # 32x32 pixels in 8x8 patches: the image took 16 positions in the context.
    assert with_image[-1].usage.prompt_tokens == text_only[-1].usage.prompt_tokens + 16
    again = drain(vision_gguf, job(messages, max_tokens=6, seed=1))
    assert text_of(again) == text_of(with_image)  # no stale image positions reused from the cache


def test_a_batching_gguf_runs_image_prompts_alone_between_batched_text(
    vision_gguf: Any, vision_gguf_batched: Any
) -> None:
    """max_parallel 3: an image prompt between two text prompts, all submitted at once, waits for
    the context to itself and gives what it gives on the serial engine; the text prompts too."""
    picture = [{"role": "user", "content": [
        {"type": "text", "text": "what colour?"},
        {"type": "image_url", "image_url": {"url": png_data_url((50, 30))}},
    ]}]
    jobs = [job(HELLO, max_tokens=6, temperature=0), job(picture, max_tokens=6, temperature=0),
            job([{"role": "user", "content": "what colour?"}], max_tokens=6, temperature=0)]
    serial = [text_of(drain(vision_gguf, j)) for j in jobs]

    async def together() -> list[list[Any]]:
        async def one(j: ChatJob) -> list[Any]:
            run = ChatRun(vision_gguf_batched, "qwen3.5", j)
            try:
                return [event async for batch in run.events() for event in batch]
            finally:
                await run.stopped

        return list(await asyncio.gather(*(one(j) for j in jobs)))

    assert [text_of(events) for events in asyncio.run(together())] == serial
    assert vision_gguf_batched.occupancy() == (0, 0)


@pytest.mark.parametrize("name", ["qwen_tf", "gpt_oss_tf", "qwen_gguf"])
def test_a_prompt_extending_the_last_ones_prefix_reuses_its_cache(request: pytest.FixtureRequest, name: str) -> None:
    """The same long system prompt with another question: the second turn reports the reused
    tokens as cached and gives exactly the tokens it gives computed cold (greedy)."""
    engine = request.getfixturevalue(name)
    system = {"role": "system", "content": " ".join(["the weather and a file on the table"] * 10)}
    other = {"role": "system", "content": " ".join(["a table of files"] * 14)}

    def ask(sys_msg: dict[str, str], question: str) -> list[Any]:
        return drain(engine, job([sys_msg, {"role": "user", "content": question}], max_tokens=8, temperature=0))

    first = ask(system, "hello")
    warm = ask(system, "the weather?")
    ask(other, "hello")  # another prefix takes the cache
    cold = ask(system, "the weather?")
    assert first[-1].usage.prompt_tokens > 80
    assert warm[-1].usage.cached_tokens >= first[-1].usage.prompt_tokens - 2 * 64 - 8
    assert cold[-1].usage.cached_tokens < 16
    assert text_of(warm) == text_of(cold)


@pytest.mark.parametrize("name", ["qwen_gguf", "qwen_tf", "gpt_oss_tf"])
def test_named_tool_choice_forces_that_call(request: pytest.FixtureRequest, name: str) -> None:
    backend = request.getfixturevalue(name)
    forced = job(HELLO, tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}},
                 max_tokens=6, seed=1, behaviour=Behaviour())
    events = drain(backend, forced)
    assert events[0] == ToolCallStart(index=0, id=events[0].id, name="get_weather")
    assert events[-1].reason == "tool_calls"
    args = "".join(e.text for e in events if type(e).__name__ == "ToolCallArgs")
    assert isinstance(json.loads(args), dict)  # whatever a random model wrote, valid JSON arguments


def test_a_broken_checkpoint_fails_the_load_cleanly(tmp_path: Any) -> None:
    from llmux.engines.factory import create_engine
    from tests.fixtures.tiny_models import physical

    (tmp_path / "config.json").write_text("{not json")
    registry, spec = physical(tmp_path, backend="transformers", family="qwen3.5", device="cpu")
    backend = create_engine(spec, registry)
    with pytest.raises(Exception):
        backend.load()
    assert backend.model is None and backend.tokenizer is None
