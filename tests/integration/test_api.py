"""The real app over real HTTP (uvicorn on loopback), driven by the official openai client
and by raw httpx where the wire details matter. Backends are the instant test backends."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from llmux.app import create_app
from llmux.engines.base import Prompted, TextJob
from llmux.engines.text import Item
from llmux.registry import ApiKeysFile, PhysicalModel, Registry
from tests.support.backends import InstantChat
from tests.support.server import serve, wait_for

KEY = "CHANGE-ME-open-webui-placeholder"


class SlowChat(InstantChat):
    """Loads only when the test allows it; generates until cancelled."""

    load_gate = threading.Event()
    cancelled = threading.Event()

    def load(self) -> float | None:
        assert self.load_gate.wait(10)
        return super().load()

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        yield Prompted(1, 100_000)
        yield "<|channel|>final<|message|>"  # gpt-oss's harmony format: the answer channel
        n = 0
        try:
            while not cancel.is_set() and n < 100_000:
                yield "tick "
                n += 1
                time.sleep(0.001)
        finally:  # stopped here, or closed by the worker that saw the flag first
            if cancel.is_set():
                SlowChat.cancelled.set()


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    if spec.id == "gpt-oss-20b-uncensored":
        return SlowChat(spec, registry)
    return InstantChat(spec, registry)


@pytest.fixture(scope="module")
def server(reference: Registry, keys: ApiKeysFile) -> Iterator[str]:
    app = create_app(reference, keys, factory=factory, keepalive_s=0.05)
    with serve(app) as url:
        yield url


@pytest.fixture()
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def post(server: str, body: Any, key: str | None = KEY, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server}/v1/chat/completions", content=content, headers={**headers, "Content-Type": "application/json"}, **kw)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# ---- auth, models, health --------------------------------------------------------------------


def test_lists_all_16_virtual_models_to_the_openai_client(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert len(ids) == 16 + 1  # the requirements' 16, and the OCR model (issue 13)
    assert "Qwen3.5-4B-Instruct" in ids and "Chatterbox-Multilingual" in ids
    assert client.models.retrieve("GPT-OSS-20B-High").id == "GPT-OSS-20B-High"


def test_model_metadata_clients_read(server: str, client: openai.OpenAI) -> None:
    """Type, context, capabilities and residency per virtual model, and Codex's ``models`` array."""
    listing = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    cards = {c["id"]: c for c in listing["data"]}
    qwen = cards["Qwen3.5-9B-FP8-Uncensored-Instruct"]  # llama.cpp: its context comes from n_ctx
    assert qwen["type"] == "llm" and qwen["context_length"] == qwen["meta"]["n_ctx"] == 32768
    assert qwen["capabilities"] == {"vision": True, "tools": True, "input_modalities": ["text", "image"],
                                    "output_modalities": ["text"]}
    assert cards["cohere-transcribe"]["type"] == "asr" and cards["cohere-transcribe"]["context_length"] is None
    assert cards["Chatterbox"]["capabilities"]["output_modalities"] == ["audio"]
    assert {c["status"]["value"] for c in cards.values()} <= {"loaded", "loading", "unloaded"}
    codex = {m["slug"]: m for m in listing["models"]}
    assert set(codex) == {i for i, c in cards.items() if c["type"] == "llm"}
    assert codex["Qwen3.5-9B-FP8-Uncensored-Instruct"]["context_window"] == 32768
    client.chat.completions.create(model="Qwen3.5-4B-Instruct", max_tokens=2, messages=user("hi"))
    card = client.models.retrieve("Qwen3.5-4B-Instruct").model_dump()
    assert card["status"] == {"value": "loaded"} and card["type"] == "llm"


@pytest.mark.parametrize("key", [None, "wrong-key-wrong-key", "Basic abc"])
def test_v1_needs_a_valid_key(server: str, key: str | None) -> None:
    headers = {} if key is None else {"Authorization": key if key.startswith("Basic") else f"Bearer {key}"}
    r = httpx.get(f"{server}/v1/models", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key=key or "x", max_retries=0).models.list()


def test_health_answers_without_a_key(server: str) -> None:
    r = httpx.get(f"{server}/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["vram"]["budget_gb"] == 16
    assert {"loaded", "queue_depth"} <= set(body)


# ---- chat ------------------------------------------------------------------------------------


def test_non_streamed_chat_through_a_virtual_model(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="Qwen3.5-4B-Thinking", messages=user("hello there"))
    choice = reply.choices[0]
    assert choice.message.content == "echo: hello there"
    assert choice.finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert choice.message.reasoning_content == "effort=None thinking=True"


def test_streamed_chat_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="GPT-OSS-20B-Low", messages=user("one two"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert text == "echo: one two "
    assert reasoning == "effort=low thinking=None"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_switching_virtual_models_of_one_physical_model_never_reloads(server: str, client: openai.OpenAI) -> None:
    for name in ("GPT-OSS-20B-Low", "GPT-OSS-20B-Medium", "GPT-OSS-20B-High"):
        client.chat.completions.create(model=name, messages=user("x"))
    loaded = {m["id"]: m for m in httpx.get(f"{server}/health").json()["loaded"]}
    assert loaded["gpt-oss-20b"]["state"] == "ready"
    assert set(loaded["gpt-oss-20b"]["virtual"]) == {"GPT-OSS-20B-Low", "GPT-OSS-20B-Medium", "GPT-OSS-20B-High"}


TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]


def test_streamed_tool_call_follows_the_contract(server: str) -> None:
    body = {"model": "Qwen3.5-9B-FP8-Instruct", "messages": user("go"), "tools": TOOLS, "tool_choice": "auto", "stream": True}
    r = post(server, body)
    events = [json.loads(line[6:]) for line in r.text.split("\n\n") if line.startswith("data: {")]
    assert r.text.rstrip().endswith("data: [DONE]")
    calls = [e["choices"][0]["delta"]["tool_calls"][0] for e in events if e["choices"] and e["choices"][0]["delta"].get("tool_calls")]
    assert calls[0] == {"index": 0, "id": calls[0]["id"], "type": "function", "function": {"name": "read_file", "arguments": ""}}
    assert calls[0]["id"].startswith("call_") and len(calls[0]["id"]) > len("call_")
    assert all(set(c) == {"index", "function"} and set(c["function"]) == {"arguments"} for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"echo": "go"}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_non_streamed_tool_call_has_null_content(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="Qwen3.5-9B-FP8-Instruct", messages=user("go"), tools=TOOLS)  # type: ignore[arg-type]
    message = reply.choices[0].message
    assert message.content is None
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls and message.tool_calls[0].function.name == "read_file"


def test_stream_sends_keepalives_while_the_model_loads_and_cancels_on_disconnect(server: str) -> None:
    SlowChat.load_gate.clear()
    SlowChat.cancelled.clear()
    body = {"model": "GPT-OSS-20B-Uncensored-Low", "messages": user("x"), "stream": True}
    seen: list[bytes] = []
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.iter_raw()
        seen.append(next(raw))
        assert seen[0].startswith(b": keep-alive"), "headers and a keep-alive go out before the model is ready"
        SlowChat.load_gate.set()
        while b"tick" not in b"".join(seen):
            seen.append(next(raw))
    # Leaving the block closed the connection mid-generation.
    wait_for(SlowChat.cancelled.is_set, what="the backend to see the cancel flag")
    wait_for(
        lambda: all(m["leases"] == 0 for m in httpx.get(f"{server}/health").json()["loaded"]),
        what="the lease to be released",
    )


# ---- client mistakes: OpenAI error bodies, never a 500 ----------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "no-such-model", "messages": user("x")}, 404, "model", "model_not_found"),
        ({"model": "Chatterbox", "messages": user("x")}, 404, "model", "model_not_found"),
        ({"messages": user("x")}, 400, "model", "invalid_value"),
        ({"model": "Qwen3.5-4B-Instruct"}, 400, "messages", "invalid_value"),
        ({"model": "Qwen3.5-4B-Instruct", "messages": []}, 400, "messages", "invalid_value"),
        ({"model": "Qwen3.5-4B-Instruct", "messages": user("x"), "temperature": 7}, 400, "temperature", "invalid_value"),
        ({"model": "Qwen3.5-4B-Instruct", "messages": user("x"), "n": 2}, 400, "n", "invalid_value"),
        ({"model": "Qwen3.5-4B-Instruct", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", "invalid_value"),
        (
            {"model": "GPT-OSS-20B-Low", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]},
            400,
            "messages[0].content[0].image_url",
            "vision_not_supported",
        ),
        (
            {"model": "Qwen3.5-4B-Instruct", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/x.png"}}]}]},
            400,
            "messages[0].content[0].image_url",
            "remote_images_disabled",
        ),
        (b"{not json", 400, None, "invalid_json"),
        (b"", 400, None, "invalid_json"),
    ],
)
def test_client_mistakes_get_openai_error_bodies(server: str, body: Any, status: int, param: str | None, code: str) -> None:
    r = post(server, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["code"] == code and error["message"]


def test_oversize_body_is_413(server: str) -> None:
    r = post(server, b"x" * (21 * 1024 * 1024))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_unknown_route_and_method_are_openai_errors(server: str) -> None:
    r = httpx.get(f"{server}/v1/nothing-here", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(f"{server}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"


def test_openai_client_sees_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="gpt-5", messages=user("x"))
    assert error.value.code == "model_not_found"
