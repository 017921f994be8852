"""Every sampling and structured-output parameter reaches both runtimes (tiny transformers
Qwen3.5, tiny llama GGUF) through the real app, driven by the openai SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest
import yaml

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_models
from tests.fixtures.chat_backends import tiny_dir  # noqa: F401
from tests.fixtures.tiny_models import build_gguf, build_qwen35

pytestmark = pytest.mark.slow
import llama_cpp  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip
import transformers  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip
import xgrammar  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip

KEY = "sk-test-sampling-0123456789"
MODELS = ["tf-instruct", "gguf-instruct"]
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "sunny", "days"],
          "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo", "Berlin"]},
                         "sunny": {"type": "boolean"}, "days": {"type": "integer", "enum": [1, 2, 3]}}}
HELLO = [{"role": "user", "content": "The weather in Paris, as JSON."}]


@pytest.fixture(scope="module")
def client(tiny_dir: Path) -> Iterator[openai.OpenAI]:  # noqa: F811
    config = {
        "budget_gb": 8, "models_dir": str(tiny_dir),
        "physical": {
            "tiny-qwen": {"type": "llm", "backend": "transformers", "family": "qwen3.5", "vram_gb": 0.1,
                          "weights": str(build_qwen35(tiny_dir / "sampling-qwen")),
                          "options": {"device": "cpu", "threads": 1}},
            "tiny-gguf": {"type": "llm", "backend": "llamacpp", "family": "qwen3.5", "vram_gb": 0.1,
                          "weights": str(build_gguf(tiny_dir / "sampling.gguf")),
                          "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 1024}},
            "tiny-gguf-batched": {"type": "llm", "backend": "llamacpp", "family": "qwen3.5", "vram_gb": 0.1,
                                  "weights": str(build_gguf(tiny_dir / "sampling-batched.gguf")),
                                  "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 1024, "max_parallel": 2}},
        },
        "virtual": {
            "tf-instruct": {"physical": "tiny-qwen", "behaviour": {"thinking": False}},
            "tf-thinking": {"physical": "tiny-qwen", "behaviour": {"thinking": True}},
            "gguf-batched": {"physical": "tiny-gguf-batched", "behaviour": {"thinking": False}},
            "gguf-instruct": {"physical": "tiny-gguf", "behaviour": {
                "thinking": False, "sampling": {"temperature": 1.5, "top_k": 1}}},
        },
    }
    path = tiny_dir / "sampling-models.yaml"
    path.write_text(yaml.safe_dump(config))
    app = create_app(load_models(path), ApiKeysFile(keys=(ApiKey(name="t", key=KEY),)))
    from tests.support.server import serve

    with serve(app) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_json_schema_output_validates(client: openai.OpenAI, model: str) -> None:
    for seed in (1, 2, 3):
        reply = client.chat.completions.create(
            model=model, messages=HELLO, max_tokens=200, seed=seed, temperature=1.0,
            response_format={"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True}})
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content or ""), SCHEMA)


@pytest.mark.parametrize("model", MODELS)
def test_responses_text_format_json_schema_validates(client: openai.OpenAI, model: str) -> None:
    r = client.responses.create(model=model, input="weather?", max_output_tokens=200,
                                text={"format": {"type": "json_schema", "name": "weather", "schema": SCHEMA, "strict": True}})
    assert r.status == "completed" and r.text.format.type == "json_schema"
    jsonschema.validate(json.loads(r.output_text), SCHEMA)


@pytest.mark.parametrize("model", MODELS)
def test_json_object_is_an_object(client: openai.OpenAI, model: str) -> None:
    """A random model may write a long object: only that it stays JSON is checked when cut."""
    reply = client.chat.completions.create(model=model, messages=HELLO, max_tokens=60, seed=4,
                                           response_format={"type": "json_object"}, frequency_penalty=0.5)
    text = reply.choices[0].message.content or ""
    assert text.lstrip().startswith("{")
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize("model", [*MODELS, "gguf-batched"])
def test_top_k_one_is_greedy_whatever_the_temperature(client: openai.OpenAI, model: str) -> None:
    greedy = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, temperature=0)
    for seed in (1, 2):
        hot = client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, temperature=1.8,
                                             seed=seed, extra_body={"top_k": 1})
        assert hot.choices[0].message.content == greedy.choices[0].message.content


def test_a_virtual_models_default_sampling_applies(client: openai.OpenAI) -> None:
    """gguf-instruct defaults to top_k 1: greedy at any temperature unless the request says otherwise."""
    greedy = client.chat.completions.create(model="gguf-instruct", messages=HELLO, max_tokens=12, temperature=0)
    for seed in (5, 6):
        default = client.chat.completions.create(model="gguf-instruct", messages=HELLO, max_tokens=12, seed=seed)
        assert default.choices[0].message.content == greedy.choices[0].message.content


@pytest.mark.parametrize("model", [*MODELS, "gguf-batched"])
def test_every_sampling_parameter_is_accepted(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=8, seed=3, temperature=0.7, top_p=0.9, presence_penalty=1.5,
        frequency_penalty=0.5, extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    assert reply.usage.completion_tokens <= 8


def test_structured_output_on_a_reasoning_turn_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="tf-thinking", messages=HELLO, response_format={"type": "json_object"})
    assert exc.value.body["param"] == "response_format"  # type: ignore[index]


@pytest.mark.parametrize("model", MODELS)
def test_logprobs_streamed_and_not(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, temperature=0,
                                           logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert len(content) == reply.usage.completion_tokens  # every generated token (none is the end token)
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        tops = [t.logprob for t in entry.top_logprobs]
        assert tops == sorted(tops, reverse=True) and sum(2.718281828 ** t for t in tops) <= 1.0 + 1e-6
        # greedy: the chosen token is the most likely one
        assert entry.logprob == pytest.approx(tops[0], abs=1e-4) and entry.bytes == entry.top_logprobs[0].bytes
    assert b"".join(bytes(e.bytes) for e in content).decode(errors="replace") == reply.choices[0].message.content
    chunks = list(client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, temperature=0,
                                                 logprobs=True, stream=True))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content or ()]
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in content]
    assert all(e.top_logprobs == [] for e in streamed)


def test_logprobs_on_a_reasoning_turn_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="tf-thinking", messages=HELLO, logprobs=True)
    assert exc.value.body["param"] == "logprobs"  # type: ignore[index]


@pytest.mark.parametrize("model", MODELS)
def test_responses_logprobs(client: openai.OpenAI, model: str) -> None:
    r = client.responses.create(model=model, input="hello", max_output_tokens=8, temperature=0, top_logprobs=2,
                                include=["message.output_text.logprobs"])
    (message,) = [i for i in r.output if i.type == "message"]  # a random model may also write a tool call
    part = message.content[0]
    assert 0 < len(part.logprobs or ()) <= 8
    assert all(e.logprob <= 0 and len(e.top_logprobs) == 2 for e in part.logprobs or ())
    assert part.text.strip() in b"".join(bytes(e.bytes) for e in part.logprobs or ()).decode(errors="replace")


def test_the_batched_engine_serves_logprobs_and_json_on_the_serial_path(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gguf-batched", messages=HELLO, max_tokens=4, logprobs=True)
    assert r.choices[0].logprobs and r.choices[0].logprobs.content
    r = client.chat.completions.create(model="gguf-batched", messages=HELLO, max_tokens=24,
                                       response_format={"type": "json_object"})
    assert r.choices[0].message.content and r.choices[0].message.content.lstrip().startswith("{")
