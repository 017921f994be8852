"""Tools on every model, over the real app and real llama.cpp (scripted ChatML GGUFs):

- a model without tool calling answers a request that carries ``tools`` (Open WebUI and OpenCode
  send them on every message) unless the request insists on a call (400 naming ``tool_choice``);
- a ChatML model with ``tools: true`` calls tools Hermes-style, streamed and not, and completes
  a tool round trip.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import structlog
import yaml

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_models
from tests.fixtures.tiny_models import HERMES_ANSWER_SCRIPT, HERMES_TOOL_SCRIPT, build_scripted_gguf

pytestmark = pytest.mark.slow
import llama_cpp  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip

KEY = "sk-test-tool-formats-0123456789"
READ = {"type": "function", "function": {"name": "read", "description": "Read a file.", "parameters": {
    "type": "object", "properties": {"filePath": {"type": "string"}}, "required": ["filePath"]}}}
USER = [{"role": "user", "content": "What does notes.txt say?"}]


def hermes_model(directory: Path, *, tools: bool) -> dict[str, Any]:
    weights = directory / "hermes.gguf"
    if not weights.exists():
        build_scripted_gguf(weights, HERMES_TOOL_SCRIPT, template="chatml_scripted.jinja",
                            turns=(("\t", HERMES_ANSWER_SCRIPT),))
    return {"type": "llm", "backend": "llamacpp", "family": "chatml", "tools": tools, "vram_gb": 0.1,
            "weights": str(weights), "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 2048}}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[openai.AsyncOpenAI]:
    config = {"budget_gb": 8, "models_dir": str(tmp_path),
              "physical": {"hermes": hermes_model(tmp_path, tools=True), "plain": hermes_model(tmp_path, tools=False)},
              "virtual": {"hermes": {"physical": "hermes"}, "plain": {"physical": "plain"}}}
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(config))
    app = create_app(load_models(tmp_path / "models.yaml"), ApiKeysFile((ApiKey("t", KEY),)))
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://llmux", timeout=60)
    async with openai.AsyncOpenAI(base_url="http://llmux/v1", api_key=KEY, http_client=http, max_retries=0) as client:
        yield client


async def test_tools_on_a_model_without_tool_calling_are_left_out(client: openai.AsyncOpenAI) -> None:
    with structlog.testing.capture_logs() as logs:
        reply = await client.chat.completions.create(model="plain", messages=USER, tools=[READ], tool_choice="auto")
    # The tools never reached the prompt, so the scripted text is just text.
    assert reply.choices[0].finish_reason == "stop" and not reply.choices[0].message.tool_calls
    assert reply.choices[0].message.content.startswith("I will read it.\n<tool_call>")
    assert any(e["event"] == "chat.tools_dropped" and e["model"] == "plain" for e in logs)
    for choice in ("required", {"type": "function", "function": {"name": "read"}}):
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="plain", messages=USER, tools=[READ], tool_choice=choice)
        assert info.value.body["param"] == "tool_choice"  # type: ignore[index]


async def test_hermes_tool_round_trip(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(model="hermes", messages=USER, tools=[READ])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "I will read it."
    (call,) = choice.message.tool_calls
    assert call.function.name == "read" and json.loads(call.function.arguments) == {"filePath": "notes.txt"}
    history = [*USER, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "llamas are great"}]
    answer = await client.chat.completions.create(model="hermes", messages=history, tools=[READ])
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == "The file says: llamas are great."


async def test_hermes_tool_call_streams(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="hermes", messages=USER, tools=[READ], stream=True)
    chunks = [chunk async for chunk in stream]
    calls = [c for chunk in chunks if chunk.choices for c in chunk.choices[0].delta.tool_calls or ()]
    assert calls[0].function.name == "read" and calls[0].id
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {"filePath": "notes.txt"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


async def test_model_card_reports_the_runtime_once_loaded(client: openai.AsyncOpenAI) -> None:
    before = (await client.models.retrieve("hermes")).model_dump()
    assert before["status"] == {"value": "unloaded"} and before["context_length"] == 2048
    assert before["capabilities"]["tools"] is True and before["type"] == "llm"
    await client.chat.completions.create(model="hermes", messages=USER, max_tokens=2)
    after = (await client.models.retrieve("hermes")).model_dump()
    assert after["status"] == {"value": "loaded"} and after["meta"] == {"n_ctx": 2048}
    assert (await client.models.retrieve("plain")).model_dump()["capabilities"]["tools"] is False
