"""``client.responses.create`` (the official openai SDK, streamed and not) against real
runtimes through a real uvicorn server: a tiny random Qwen3.5 on transformers, and scripted
GGUFs on llama.cpp whose weights fix the output (a tool call; a thinking turn)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_models
from tests.fixtures.chat_backends import tiny_dir  # noqa: F401
from tests.fixtures.tiny_models import QWEN_THINKING_SCRIPT, QWEN_TOOL_SCRIPT, build_qwen35, build_scripted_gguf
from tests.support.server import serve

pytestmark = pytest.mark.slow
import llama_cpp  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip
import transformers  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip

KEY = "sk-test-responses-0123456789"
TOOL = {"type": "function", "name": "tool_3", "description": "Reads a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}}}}


def scripted(directory: Path, name: str, script: list[str]) -> dict[str, Any]:
    return {"type": "llm", "backend": "llamacpp", "family": "qwen3.5", "tools": True, "vram_gb": 0.1,
            "weights": str(build_scripted_gguf(directory / f"{name}.gguf", script)),
            "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 4096}}


@pytest.fixture(scope="module")
def client(tiny_dir: Path) -> Iterator[openai.OpenAI]:  # noqa: F811
    config = {
        "budget_gb": 8, "models_dir": str(tiny_dir),
        "physical": {
            "tiny-qwen": {"type": "llm", "backend": "transformers", "family": "qwen3.5", "tools": True,
                          "vram_gb": 0.1, "weights": str(build_qwen35(tiny_dir / "responses-qwen")),
                          "options": {"device": "cpu", "threads": 1}},
            "qwen-tools": scripted(tiny_dir, "responses-tools", QWEN_TOOL_SCRIPT),
            "qwen-thinks": scripted(tiny_dir, "responses-thinks", QWEN_THINKING_SCRIPT),
        },
        "virtual": {
            "qwen-instruct": {"physical": "tiny-qwen", "behaviour": {"thinking": False}},
            "agent": {"physical": "qwen-tools", "behaviour": {"thinking": False}},
            "thinker": {"physical": "qwen-thinks", "behaviour": {"thinking": True}},
        },
    }
    path = tiny_dir / "responses-models.yaml"
    path.write_text(yaml.safe_dump(config))
    app = create_app(load_models(path), ApiKeysFile(keys=(ApiKey(name="t", key=KEY),)), keepalive_s=0.05)
    with serve(app) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


def test_transformers_text_streamed_and_not(client: openai.OpenAI) -> None:
    whole = client.responses.create(model="qwen-instruct", input="hello", max_output_tokens=6, temperature=0)
    assert whole.status in ("completed", "incomplete") and 0 < whole.usage.output_tokens <= 6
    # (not ``responses.stream()``: its ``get_final_response`` knows only ``response.completed``)
    events = list(client.responses.create(model="qwen-instruct", input="hello", max_output_tokens=6,
                                          temperature=0, stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert events[-1].type == f"response.{whole.status}"
    streamed = events[-1].response
    assert streamed.usage.output_tokens == whole.usage.output_tokens
    assert "".join(deltas).strip() == streamed.output_text == whole.output_text  # greedy: the same text


def test_llamacpp_function_call_streamed_and_not(client: openai.OpenAI) -> None:
    whole = client.responses.create(model="agent", input="read the app", tools=[TOOL])  # type: ignore[list-item]
    assert [i.type for i in whole.output] == ["message", "function_call"]
    assert whole.output[0].content[0].text == "Let me look."  # type: ignore[union-attr]
    call = whole.output[1]
    assert call.name == "tool_3" and json.loads(call.arguments) == {"path": "src/app.py", "limit": 20}  # type: ignore[union-attr]
    stream = client.responses.create(model="agent", input="read the app", tools=[TOOL], stream=True)  # type: ignore[list-item]
    events = list(stream)
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done.item_id == final.output[1].id and json.loads(done.arguments) == {"path": "src/app.py", "limit": 20}
    added = [e.item.id for e in events if e.type == "response.output_item.added"]
    assert added == [i.id for i in final.output]


def test_llamacpp_reasoning_item(client: openai.OpenAI) -> None:
    r = client.responses.create(model="thinker", input="hi")
    assert [i.type for i in r.output] == ["reasoning", "message"]
    assert r.output[0].content[0].text.strip() == "The user greets me."  # type: ignore[union-attr]
    assert r.output_text == "Hello! How can I help?"
    assert 0 < r.usage.output_tokens_details.reasoning_tokens < r.usage.output_tokens


def test_an_error_after_the_headers_is_response_failed(client: openai.OpenAI) -> None:
    """A prompt over the context is found by the engine, after a stream's headers went out."""
    long = "word " * 5000
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(model="agent", input=long)
    assert exc.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    events = list(client.responses.create(model="agent", input=long, stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "response.failed"]
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.code == "context_length_exceeded"  # type: ignore[union-attr]
