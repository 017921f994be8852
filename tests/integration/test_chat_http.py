"""Real runtimes behind the real app over real HTTP, driven by the official openai client:
tiny random Qwen3.5 / gpt-oss transformers checkpoints and a tiny Qwen-template GGUF."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import structlog
import yaml

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_models
from tests.fixtures.chat_backends import tiny_dir  # noqa: F401
from tests.fixtures.tiny_models import (
    HARMONY_SCRIPT,
    QWEN_THINKING_SCRIPT,
    QWEN_TOOL_SCRIPT,
    build_gguf,
    build_gpt_oss,
    build_qwen35,
    build_scripted_gguf,
)
from tests.support.server import serve, wait_for

pytestmark = pytest.mark.slow
import llama_cpp  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip
import transformers  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip

KEY = "sk-test-chat-http-0123456789"


def tool(i: int) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": f"tool_{i}", "description": f"Tool number {i}: reads, edits or lists files.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string", "description": "file path"},
            "limit": {"type": "integer", "description": "max lines"}}, "required": ["path"]}}}


def scripted(directory: Path, name: str, script: list[str], *, family: str = "qwen3.5", **kw: Any) -> dict[str, Any]:
    weights = build_scripted_gguf(directory / f"{name}.gguf", script, **kw)
    return {"type": "llm", "backend": "llamacpp", "family": family, "tools": True, "vram_gb": 0.1,
            "weights": str(weights), "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 4096}}


@pytest.fixture(scope="module")
def server(tiny_dir: Path) -> Iterator[str]:  # noqa: F811
    config = {
        "budget_gb": 8,
        "models_dir": str(tiny_dir),
        "physical": {
            "tiny-qwen": {"type": "llm", "backend": "transformers", "family": "qwen3.5", "vision": True,
                          "tools": True, "vram_gb": 0.1, "weights": str(build_qwen35(tiny_dir / "http-qwen")),
                          "options": {"device": "cpu", "threads": 1}},
            "tiny-gpt-oss": {"type": "llm", "backend": "transformers", "family": "gpt-oss", "tools": True,
                             "vram_gb": 0.1, "weights": str(build_gpt_oss(tiny_dir / "http-gpt-oss")),
                             "options": {"device": "cpu", "threads": 1, "max_context": 512}},
            "tiny-gguf": {"type": "llm", "backend": "llamacpp", "family": "qwen3.5", "tools": True,
                          "vram_gb": 0.1, "weights": str(build_gguf(tiny_dir / "http-tiny.gguf")),
                          "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 4096}},
            # Scripted GGUFs: real llama.cpp inference whose output is fixed by the weights.
            "qwen-tools": scripted(tiny_dir, "qwen-tools", QWEN_TOOL_SCRIPT),
            "qwen-thinks": scripted(tiny_dir, "qwen-thinks", QWEN_THINKING_SCRIPT),
            "oss-tools": scripted(tiny_dir, "oss-tools", HARMONY_SCRIPT, family="gpt-oss",
                                  template="harmony.jinja", after="t", eos="<|call|>"),
        },
        "virtual": {
            "qwen-instruct": {"physical": "tiny-qwen", "behaviour": {"thinking": False}},
            "qwen-thinking": {"physical": "tiny-qwen", "behaviour": {"thinking": True}},
            "oss-low": {"physical": "tiny-gpt-oss", "behaviour": {"reasoning_effort": "low"}},
            "oss-high": {"physical": "tiny-gpt-oss", "behaviour": {"reasoning_effort": "high"}},
            "gguf-instruct": {"physical": "tiny-gguf", "behaviour": {"thinking": False}},
            "agent": {"physical": "qwen-tools", "behaviour": {"thinking": False}},
            "thinker": {"physical": "qwen-thinks", "behaviour": {"thinking": True}},
            "oss-agent": {"physical": "oss-tools", "behaviour": {"reasoning_effort": "low"}},
        },
    }
    path = tiny_dir / "http-models.yaml"
    path.write_text(yaml.safe_dump(config))
    app = create_app(load_models(path), ApiKeysFile(keys=(ApiKey(name="t", key=KEY),)), keepalive_s=0.05)
    with serve(app) as url:
        yield url


@pytest.fixture()
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello the weather"}]


@pytest.mark.parametrize("model", ["qwen-instruct", "oss-high", "gguf-instruct"])
def test_non_streamed_completion(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, seed=1)
    choice = reply.choices[0]
    assert reply.model == model
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 8 and reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@pytest.mark.parametrize("model", ["qwen-thinking", "oss-low", "gguf-instruct"])
def test_streamed_completion_with_usage(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(model=model, messages=HELLO, max_tokens=10, seed=2, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 10


def test_behaviours_reach_the_rendered_prompt_without_reloading(client: openai.OpenAI) -> None:
    with structlog.testing.capture_logs() as logs:
        for model in ("qwen-instruct", "qwen-thinking", "oss-low", "oss-high"):
            client.chat.completions.create(model=model, messages=HELLO, max_tokens=2)
    prompts = [e["prompt"] for e in logs if e["event"] == "chat.rendered"]
    assert prompts[0].endswith("<think>\n\n</think>\n\n")
    assert prompts[1].endswith("<|im_start|>assistant\n<think>\n")
    assert "Reasoning: low" in prompts[2] and "Reasoning: high" in prompts[3]
    loads = [e["model"] for e in logs if e["event"] == "model.weights_loaded"]
    assert loads.count("tiny-qwen") <= 1 and loads.count("tiny-gpt-oss") <= 1  # one load per physical model


def test_opencode_shaped_request(server: str) -> None:
    """10 tools, tool_choice auto, include_usage, max_tokens 32000 (capped, not refused), streamed;
    checked on the wire: the tool call's first delta carries index, id, type, name and empty
    arguments, later deltas only arguments; finish_reason tool_calls; a usage-only last chunk."""
    body = {
        "model": "agent", "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 32000,
        "tools": [tool(i) for i in range(10)], "tool_choice": "auto",
        "messages": [{"role": "system", "content": "You are opencode, an agent."},
                     {"role": "user", "content": "Show me the start of src/app.py."}],
    }
    chunks = sse_chunks(server, body)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    content = "".join(d.get("content") or "" for d in deltas)
    calls = [call for d in deltas for call in d.get("tool_calls") or []]
    first, rest = calls[0], calls[1:]
    assert content == "Let me look."
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "tool_3", "arguments": ""}
    assert all(set(c) <= {"index", "function"} and set(c["function"]) == {"arguments"} for c in rest)
    assert json.loads("".join(c["function"]["arguments"] for c in rest)) == {"path": "src/app.py", "limit": 20}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["tool_calls"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6


def test_opencode_shaped_request_with_the_openai_client(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="agent", max_tokens=32000, tools=[tool(i) for i in range(10)], tool_choice="auto",
        messages=[{"role": "user", "content": "Show me the start of src/app.py."}],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "tool_3" and json.loads(call.function.arguments) == {"path": "src/app.py", "limit": 20}


def test_random_model_with_ten_tools_is_capped_not_refused(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gguf-instruct", stream=True, stream_options={"include_usage": True}, max_tokens=32000,
        tools=[tool(i) for i in range(10)], tool_choice="auto", temperature=0.7,
        messages=[{"role": "user", "content": "List the files in this repository."}],
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage.prompt_tokens + usage.completion_tokens <= 4096


def test_reasoning_streams_as_reasoning_content(server: str) -> None:
    chunks = sse_chunks(server, {"model": "thinker", "stream": True, "messages": HELLO})
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "The user greets me."
    assert "".join(d.get("content") or "" for d in deltas) == "Hello! How can I help?"
    assert not any(d.get("reasoning_content") and d.get("content") for d in deltas)


def test_reasoning_in_a_non_streamed_reply(client: openai.OpenAI) -> None:
    message = client.chat.completions.create(model="thinker", messages=HELLO).choices[0].message
    assert message.content == "Hello! How can I help?"
    assert message.model_extra.get("reasoning_content") == "The user greets me."


def test_harmony_reasoning_and_tool_call_through_llama_cpp(client: openai.OpenAI) -> None:
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}
    reply = client.chat.completions.create(model="oss-agent", tools=[weather], messages=HELLO)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.model_extra.get("reasoning_content") == "Need the weather."
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris", "days": 2}


def sse_chunks(server: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                          timeout=60)
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def png_data_url() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 200, 10)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_image_reaches_a_vision_model(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="qwen-instruct", max_tokens=3, messages=[{"role": "user", "content": [
        {"type": "text", "text": "colour?"}, {"type": "image_url", "image_url": {"url": png_data_url()}}]}])
    assert reply.usage.prompt_tokens > 20


def test_image_to_a_text_model_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="oss-low", max_tokens=3, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": png_data_url()}}]}])


def test_client_disconnect_cancels_generation(server: str) -> None:
    body = {"model": "qwen-instruct", "stream": True, "max_tokens": 2000, "messages": HELLO}
    with structlog.testing.capture_logs() as logs:
        with httpx.stream("POST", f"{server}/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and '"choices":[{' in line.replace(" ", ""):
                    break  # first real chunk: hang up

        def mine() -> list[dict[str, Any]]:
            """This request's line (the previous test's may land here too: it is written after its answer)."""
            return [e for e in logs if e["event"] == "request.done" and e.get("stream") is True]

        wait_for(mine, 30, "generation to stop")
    generated = mine()[0]  # the request's canonical line
    assert generated["cancelled"] is True
    assert generated["completion_tokens"] < 2000


def test_error_body_for_a_prompt_over_the_context(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="oss-low", max_tokens=3,
                                       messages=[{"role": "user", "content": "hello the weather " * 300}])
    assert "context" in json.dumps(info.value.body)


def test_transformers_context_is_known_once_loaded(client: openai.OpenAI) -> None:
    """No ``max_context`` in the config: the model's own limit, reported once it is loaded."""
    client.chat.completions.create(model="qwen-instruct", max_tokens=2, messages=HELLO)
    card = client.models.retrieve("qwen-instruct").model_dump()
    assert card["status"] == {"value": "loaded"} and card["context_length"] == card["meta"]["n_ctx"] == 2048


def test_usage_details_reasoning_and_cached_prefix(client: openai.OpenAI) -> None:
    """llama.cpp keeps the previous prompt evaluated: the same conversation again reuses all
    of it but the last token, which it evaluates for fresh logits."""
    client.chat.completions.create(model="thinker", messages=HELLO)
    usage = client.chat.completions.create(model="thinker", messages=HELLO).usage
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1
    assert usage.completion_tokens_details.reasoning_tokens == 2  # "The user greets me." and "</think>"
    stream = client.chat.completions.create(model="thinker", messages=HELLO, stream=True,
                                            stream_options={"include_usage": True})
    last = list(stream)[-1].usage
    assert last.completion_tokens_details.reasoning_tokens == 2 and last.prompt_tokens_details.cached_tokens > 0
