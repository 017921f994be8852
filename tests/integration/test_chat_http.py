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
from tests.fixtures.tiny_models import build_gguf, build_gpt_oss, build_qwen35
from tests.support.server import serve, wait_for

pytestmark = pytest.mark.slow
pytest.importorskip("transformers")
pytest.importorskip("llama_cpp")

KEY = "sk-test-chat-http-0123456789"


def tool(i: int) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": f"tool_{i}", "description": f"Tool number {i}: reads, edits or lists files.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string", "description": "file path"},
            "limit": {"type": "integer", "description": "max lines"}}, "required": ["path"]}}}


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
        },
        "virtual": {
            "qwen-instruct": {"physical": "tiny-qwen", "behaviour": {"thinking": False}},
            "qwen-thinking": {"physical": "tiny-qwen", "behaviour": {"thinking": True}},
            "oss-low": {"physical": "tiny-gpt-oss", "behaviour": {"reasoning_effort": "low"}},
            "oss-high": {"physical": "tiny-gpt-oss", "behaviour": {"reasoning_effort": "high"}},
            "gguf-instruct": {"physical": "tiny-gguf", "behaviour": {"thinking": False}},
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


def test_opencode_shaped_request(client: openai.OpenAI) -> None:
    """10 tools, tool_choice auto, include_usage, max_tokens 32000: capped, not refused."""
    stream = client.chat.completions.create(
        model="gguf-instruct", stream=True, stream_options={"include_usage": True}, max_tokens=32000,
        tools=[tool(i) for i in range(10)], tool_choice="auto", temperature=0.7,
        messages=[{"role": "system", "content": "You are opencode, an agent."},
                  {"role": "user", "content": "List the files in this repository."}],
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.prompt_tokens + usage.completion_tokens <= 4096
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish in (["length"], ["stop"], ["tool_calls"])


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
        wait_for(lambda: any(e["event"] == "chat.generated" for e in logs), 30, "generation to stop")
    generated = next(e for e in logs if e["event"] == "chat.generated")
    assert generated["cancelled"] is True
    assert generated["completion_tokens"] < 2000


def test_error_body_for_a_prompt_over_the_context(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="oss-low", max_tokens=3,
                                       messages=[{"role": "user", "content": "hello the weather " * 300}])
    assert "context" in json.dumps(info.value.body)
