"""A request's reasoning effort (chat's ``reasoning_effort``, Responses' ``reasoning.effort``)
through the real app over real HTTP, on scripted GGUFs run by llama.cpp (their weights fix the
output): Qwen3.5 thinks unless the effort is ``none``, exactly as the virtual model with that
``thinking`` would; gpt-oss takes OpenAI's six levels as its three; a model without reasoning
accepts ``none`` and refuses any level with a 400, before it is loaded."""

from __future__ import annotations

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
from tests.fixtures.tiny_models import HARMONY_SCRIPT, QWEN_THINKING_SCRIPT, build_scripted_gguf
from tests.support.server import serve

pytestmark = pytest.mark.slow
import llama_cpp  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip

KEY = "sk-test-effort-0123456789"
HELLO = [{"role": "user", "content": "hello"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}
REASONING, ANSWER = "The user greets me.", "Hello! How can I help?"


def scripted(directory: Path, name: str, script: list[str], family: str, **kw: Any) -> dict[str, Any]:
    weights = build_scripted_gguf(directory / f"{name}.gguf", script, **kw)
    return {"type": "llm", "backend": "llamacpp", "family": family, "tools": True, "vram_gb": 0.1,
            "weights": str(weights), "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 2048}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    models = tmp_path_factory.mktemp("effort-models")
    config = {
        "budget_gb": 8, "models_dir": str(models),
        "physical": {
            "qwen": scripted(models, "qwen", QWEN_THINKING_SCRIPT, "qwen3.5"),
            "oss": scripted(models, "oss", HARMONY_SCRIPT, "gpt-oss", template="harmony.jinja", after="t",
                            eos="<|call|>"),
            "smol": scripted(models, "smol", ["Hi there."], "chatml", template="smollm2.jinja"),
        },
        "virtual": {
            "qwen-thinking": {"physical": "qwen", "behaviour": {"thinking": True}},
            "qwen-instruct": {"physical": "qwen", "behaviour": {"thinking": False}},
            "oss-medium": {"physical": "oss", "behaviour": {"reasoning_effort": "medium"}},
            "smol": {"physical": "smol"},
        },
    }
    (models / "models.yaml").write_text(yaml.safe_dump(config))
    app = create_app(load_models(models / "models.yaml"), ApiKeysFile(keys=(ApiKey(name="t", key=KEY),)))
    with serve(app) as url:
        yield url


@pytest.fixture()
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def post(server: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server}/v1/{path}", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


def chat(client: openai.OpenAI, model: str, **kw: Any) -> tuple[Any, str]:
    """The reply's message, and the prompt the template rendered for it."""
    with structlog.testing.capture_logs() as logs:
        message = client.chat.completions.create(model=model, messages=HELLO, **kw).choices[0].message  # type: ignore[call-overload]
    (prompt,) = [e["prompt"] for e in logs if e["event"] == "chat.rendered"]
    return message, prompt


def loaded(server: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{server}/health").json()["loaded"]}


@pytest.mark.parametrize("effort", ["minimal", "low", "high", "xhigh"])
def test_any_level_switches_thinking_on_for_a_thinking_off_qwen(client: openai.OpenAI, effort: str) -> None:
    message, prompt = chat(client, "qwen-instruct", reasoning_effort=effort)
    thinking, thinking_prompt = chat(client, "qwen-thinking")
    assert prompt == thinking_prompt  # the same template variables: an open <think>
    assert message.model_extra.get("reasoning_content") == thinking.model_extra.get("reasoning_content") == REASONING
    assert message.content == thinking.content == ANSWER


def test_none_switches_thinking_off_for_a_thinking_qwen(client: openai.OpenAI) -> None:
    message, prompt = chat(client, "qwen-thinking", reasoning_effort="none")
    instruct, instruct_prompt = chat(client, "qwen-instruct")
    assert prompt == instruct_prompt and prompt.endswith("<think>\n\n</think>\n\n")
    assert message.model_extra.get("reasoning_content") is None
    assert message.content == instruct.content == ANSWER


def test_the_override_is_for_that_request_only(client: openai.OpenAI) -> None:
    chat(client, "qwen-instruct", reasoning_effort="high")
    message, prompt = chat(client, "qwen-instruct")
    assert prompt.endswith("<think>\n\n</think>\n\n") and message.model_extra.get("reasoning_content") is None


@pytest.mark.parametrize(("effort", "level"), [("none", "low"), ("minimal", "low"), ("high", "high"), ("xhigh", "high")])
def test_gpt_oss_takes_openai_levels_as_its_three(client: openai.OpenAI, effort: str, level: str) -> None:
    message, prompt = chat(client, "oss-medium", reasoning_effort=effort, tools=[WEATHER])
    assert f"Reasoning: {level}\n" in prompt and "Reasoning: medium" not in prompt  # the request's, not the model's
    assert message.model_extra.get("reasoning_content") == "Need the weather."


def test_a_level_for_a_model_without_reasoning_is_a_400_before_it_loads(server: str) -> None:
    for stream in (False, True):
        r = post(server, "chat/completions", {"model": "smol", "messages": HELLO, "reasoning_effort": "low",
                                              "stream": stream})
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "unsupported_parameter"
        assert error["param"] == "reasoning_effort"
        assert "'smol'" in error["message"] and "no reasoning levels" in error["message"]
    r = post(server, "responses", {"model": "smol", "input": "hello", "reasoning": {"effort": "high"}})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "reasoning.effort" and r.json()["error"]["code"] == "unsupported_parameter"
    assert "smol" not in loaded(server)


def test_a_model_without_reasoning_accepts_none(client: openai.OpenAI) -> None:
    message, _ = chat(client, "smol", reasoning_effort="none")
    assert message.content == "Hi there."


@pytest.mark.parametrize(("path", "body", "param"), [
    ("chat/completions", {"messages": HELLO, "reasoning_effort": "extreme"}, "reasoning_effort"),
    ("responses", {"input": "hello", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
])
def test_an_unknown_level_is_a_400_naming_it(server: str, path: str, body: dict[str, Any], param: str) -> None:
    r = post(server, path, {"model": "qwen-instruct", **body})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


def test_responses_effort_switches_qwen_thinking(client: openai.OpenAI) -> None:
    on = client.responses.create(model="qwen-instruct", input="hello", reasoning={"effort": "medium"})
    assert [i.type for i in on.output] == ["reasoning", "message"]
    assert on.output[0].content[0].text.strip() == REASONING  # type: ignore[union-attr]
    off = client.responses.create(model="qwen-thinking", input="hello", reasoning={"effort": "none"})
    assert [i.type for i in off.output] == ["message"]
    plain = client.responses.create(model="qwen-thinking", input="hello", reasoning={"summary": "auto"})
    assert [i.type for i in plain.output] == ["reasoning", "message"]  # no effort (as Codex sends): the model's own


def test_the_openai_client_sends_every_level(client: openai.OpenAI) -> None:
    for effort in ("none", "minimal", "low", "medium", "high", "xhigh"):
        client.chat.completions.create(model="qwen-instruct", messages=HELLO, reasoning_effort=effort)  # type: ignore[arg-type]
