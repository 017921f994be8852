"""Continuous batching in the transformers engine, through real HTTP on a real uvicorn: a tiny
random Qwen3.5 (hybrid: linear and full attention, vision tower included) served with
``max_parallel: 4``, ``2`` and ``1`` (the same weights), a tiny llama (full attention only)
with ``max_parallel: 4``, and a tiny gpt-oss (sliding-window layers: stays serial)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import yaml

from llmux.app import create_app
from llmux.engines.transformers_batch import CHUNK
from llmux.registry import ApiKey, ApiKeysFile, load_models
from tests.fixtures.tiny_models import build_gpt_oss, build_llama, build_qwen35
from tests.integration.test_chat_backends import png_data_url
from tests.support.server import serve, wait_for

pytestmark = pytest.mark.slow

KEY = "sk-test-tf-batching-0123456789"
TOPICS = ["cats", "the sea", "Paris", "bread", "a lighthouse", "winter"]


def physical(weights: Path, family: str, max_parallel: int, **extra: Any) -> dict[str, Any]:
    return {"type": "llm", "backend": "transformers", "family": family, "vram_gb": 0.1, "weights": str(weights),
            **extra, "options": {"device": "cpu", "threads": 1, "max_parallel": max_parallel}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("tf-batching")
    qwen, llama, gpt_oss = build_qwen35(root / "qwen35"), build_llama(root / "llama"), build_gpt_oss(root / "gpt-oss")
    models = {f"qwen-{n}": physical(qwen, "qwen3.5", n, vision=True) for n in (4, 2, 1)}
    models["llama-4"] = physical(llama, "chatml", 4)
    models["gpt-oss-2"] = physical(gpt_oss, "gpt-oss", 2)
    virtual: dict[str, Any] = {name: {"physical": name} for name in models}
    virtual |= {f"qwen-{n}-instruct": {"physical": f"qwen-{n}", "behaviour": {"thinking": False}} for n in (4, 1)}
    config = {"budget_gb": 8, "models_dir": ".", "physical": models, "virtual": virtual}
    path = root / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    app = create_app(load_models(path), ApiKeysFile(keys=(ApiKey(name="t", key=KEY),)), keepalive_s=0.05)
    with serve(app) as url:
        yield url


def body(model: str, topic: str, max_tokens: int) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": f"Write a long story about {topic}."}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}


def deltas(url: str, model: str, topic: str, max_tokens: int = 24) -> str:
    """Everything a stream said (content, reasoning, tool calls; ids left out, they are random)."""
    said = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body(model, topic, max_tokens),
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=300) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                for choice in chunk["choices"]:
                    delta = choice["delta"]
                    for call in delta.get("tool_calls") or ():
                        call.pop("id", None)
                    said.append(json.dumps([delta, choice.get("finish_reason")], sort_keys=True))
                if chunk.get("usage"):
                    said.append(str(chunk["usage"]["completion_tokens"]))
    return "\n".join(said)


def concurrently(url: str, model: str, topics: list[str], max_tokens: int = 24) -> list[str]:
    out: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i, t=t: out.__setitem__(i, deltas(url, model, t, max_tokens)))
               for i, t in enumerate(topics)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(out) == len(topics), "a concurrent stream did not complete"
    return [out[i] for i in range(len(topics))]


def sequences(url: str, model: str) -> tuple[int, int]:
    health = httpx.get(f"{url}/health", timeout=10).json()
    status = {m["id"]: m for m in health["loaded"]}.get(model)
    return (status["sequences_running"], status["sequences_waiting"]) if status else (0, 0)


@pytest.mark.parametrize("model", ["qwen-4", "llama-4"])
def test_concurrent_streams_give_the_tokens_each_gives_alone(server: str, model: str) -> None:
    """Greedy: six streams on four slots (two wait, then take freed slots) all produce exactly
    what each produces alone."""
    alone = [deltas(server, model, t) for t in TOPICS]
    assert len(set(alone)) > 1, "the prompts should not all give the same answer"
    assert concurrently(server, model, TOPICS) == alone
    wait_for(lambda: sequences(server, model) == (0, 0), timeout_s=60, what="every slot free again")


def test_batched_answers_match_the_serial_engine(server: str) -> None:
    """``max_parallel: 1`` runs ``generate`` one request at a time: the same tokens."""
    assert [deltas(server, "qwen-1", t) for t in TOPICS[:3]] == [deltas(server, "qwen-4", t) for t in TOPICS[:3]]


class Stream:
    """A streamed request read in a thread; ``first`` is set at its first chunk with a delta."""

    def __init__(self, url: str, model: str, topic: str, max_tokens: int, *, image: bool = False) -> None:
        self.first, self.done, self.leave = threading.Event(), threading.Event(), threading.Event()
        request = body(model, topic, max_tokens)
        if image:
            text = request["messages"][0]["content"]
            request["messages"][0]["content"] = [{"type": "text", "text": text},
                                                 {"type": "image_url", "image_url": {"url": png_data_url()}}]
        self.thread = threading.Thread(target=self._run, args=(url, request), daemon=True)
        self.thread.start()

    def _run(self, url: str, request: dict[str, Any]) -> None:
        try:
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=request,
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=300) as response:
                for line in response.iter_lines():
                    if line.startswith("data: {") and '"delta":{}' not in line and '"role"' not in line:
                        self.first.set()
                    if self.leave.is_set():
                        return  # closes the connection mid-stream: the client went away
        finally:
            self.done.set()


LONG = 1900  # the context (2048) leaves about this much: a tiny Qwen3.5 never stops by itself before


def test_a_cancelled_sequence_frees_its_slot_for_a_waiting_one(server: str) -> None:
    long_a = Stream(server, "qwen-2", "cats", LONG)
    long_b = Stream(server, "qwen-2", "the sea", LONG)
    assert long_a.first.wait(120) and long_b.first.wait(120)
    waiting = Stream(server, "qwen-2", "Paris", 8)
    wait_for(lambda: sequences(server, "qwen-2") == (2, 1), timeout_s=60, what="two running, one waiting")
    long_a.leave.set()
    assert waiting.done.wait(120), "the waiting request never got the freed slot"
    assert not long_b.done.is_set(), "the waiting request ran only after every long one ended"
    long_b.leave.set()
    wait_for(lambda: sequences(server, "qwen-2") == (0, 0), timeout_s=60, what="every slot free again")


def test_prompts_admitted_together_are_prefilled_in_one_pass_and_answer_as_alone(server: str) -> None:
    """Four requests that wait while an image prompt has the model to itself are admitted in one
    turn: their prompts (of quite different lengths) go through one left-padded forward pass,
    and each still gets the tokens and log probabilities it gets alone."""
    topics = ["cats", "the sea " * 2, "Paris and the long winding river", "bread " * 4]

    def ask(topic: str) -> Any:
        request = {**body("qwen-4-instruct", topic, 8), "stream": False, "logprobs": True, "top_logprobs": 3}
        reply = httpx.post(f"{server}/v1/chat/completions", json=request,
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
        assert reply.status_code == 200, reply.text
        sizes[topic] = reply.json()["usage"]["prompt_tokens"]
        return reply.json()["choices"][0]

    sizes: dict[str, int] = {}
    alone = [ask(t) for t in topics]
    assert sum(sizes.values()) <= CHUNK and len(set(sizes.values())) == 4, "one chunk, four lengths"
    out: dict[int, Any] = {}
    with structlog.testing.capture_logs() as logs:
        blocker = Stream(server, "qwen-4", "a picture", LONG, image=True)
        assert blocker.first.wait(120)
        threads = [threading.Thread(target=lambda i=i, t=t: out.__setitem__(i, ask(t))) for i, t in enumerate(topics)]
        for thread in threads:
            thread.start()
        wait_for(lambda: sequences(server, "qwen-4") == (1, 4), timeout_s=60, what="the image alone, four waiting")
        blocker.leave.set()
        for thread in threads:
            thread.join(300)
    together = [out.get(i) for i in range(4)]
    assert [without_floats(c) for c in together] == [without_floats(c) for c in alone]
    assert floats(together) == pytest.approx(floats(alone), abs=1e-4)
    assert [e["sequences"] for e in logs if e.get("event") == "prefill.together"] == [4]
    wait_for(lambda: sequences(server, "qwen-4") == (0, 0), timeout_s=60, what="every slot free again")


def test_max_parallel_1_runs_one_sequence_at_a_time(server: str) -> None:
    first = Stream(server, "qwen-1", "cats", LONG)
    assert first.first.wait(120)
    second = Stream(server, "qwen-1", "the sea", 8)
    wait_for(lambda: sequences(server, "qwen-1") == (1, 1), timeout_s=60, what="one running, one waiting its turn")
    assert not second.first.is_set()
    first.leave.set()
    assert second.done.wait(120)
    wait_for(lambda: sequences(server, "qwen-1") == (0, 0), timeout_s=60, what="the model idle")


def test_a_model_whose_cache_cannot_be_batched_stays_serial(server: str) -> None:
    """gpt-oss's sliding-window layers: ``max_parallel: 2`` falls back to one request at a time,
    and concurrent requests still get what each gets alone."""
    alone = [deltas(server, "gpt-oss-2", t, 8) for t in TOPICS[:3]]
    assert concurrently(server, "gpt-oss-2", TOPICS[:3], 8) == alone


def test_a_repeated_long_prompt_reports_its_cached_tokens(server: str) -> None:
    """The batched path serves a prompt that extends the model's prefix snapshot from it."""
    def ask() -> dict[str, Any]:
        request = {**body("qwen-4", "bread " * 150, 4), "stream": False}
        reply = httpx.post(f"{server}/v1/chat/completions", json=request,
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
        assert reply.status_code == 200
        usage: dict[str, Any] = reply.json()["usage"]
        return usage

    first = ask()
    assert first["prompt_tokens"] > 128
    again = ask()
    assert again["prompt_tokens_details"]["cached_tokens"] > 0
    assert again["prompt_tokens_details"]["cached_tokens"] % 64 == 0


def floats(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [f for v in value.values() for f in floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in floats(v)]
    return [value] if isinstance(value, float) else []


def without_floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_floats(v) for k, v in value.items() if not isinstance(v, float)}
    if isinstance(value, list):
        return [without_floats(v) for v in value if not isinstance(v, float)]
    return value


@pytest.mark.parametrize("extra", [
    {"logprobs": True, "top_logprobs": 2},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}},
    {"presence_penalty": 1.5, "frequency_penalty": 0.5, "repetition_penalty": 1.3},
])
def test_the_batched_path_samples_like_the_serial_one(server: str, extra: dict[str, Any]) -> None:
    """Log probabilities, a JSON schema and the penalties: the batched engine answers exactly as
    ``generate`` does (greedy), also with other sequences running beside it."""
    def ask(model: str) -> Any:
        request = {**body(model, "cats", 12), "stream": False, **extra}
        reply = httpx.post(f"{server}/v1/chat/completions", json=request,
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
        assert reply.status_code == 200, reply.text
        return reply.json()["choices"][0]

    serial = ask("qwen-1-instruct")
    beside = Stream(server, "qwen-4", "the sea", LONG)
    assert beside.first.wait(120)
    batched = ask("qwen-4-instruct")
    # The same tokens; log probabilities agree to float rounding (a batch's matrix products sum
    # in another order than one row's).
    assert without_floats(batched) == without_floats(serial)
    assert floats(batched) == pytest.approx(floats(serial), abs=1e-4)
    beside.leave.set()
    wait_for(lambda: sequences(server, "qwen-4") == (0, 0), timeout_s=60, what="every slot free again")


def test_a_prompt_longer_than_the_context_is_a_400_and_leaves_the_others_running(server: str) -> None:
    beside = Stream(server, "qwen-4", "the sea", LONG)
    assert beside.first.wait(120)
    request = {**body("qwen-4", "bread " * 2100, 4), "stream": False}
    reply = httpx.post(f"{server}/v1/chat/completions", json=request,
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "context_length_exceeded"
    assert not beside.done.is_set()
    beside.leave.set()
    wait_for(lambda: sequences(server, "qwen-4") == (0, 0), timeout_s=60, what="every slot free again")


def test_a_seeded_sampled_answer_does_not_depend_on_what_runs_beside_it(server: str) -> None:
    """Each sequence samples with its own generator: the same seed, the same tokens, alone or
    batched with another sequence."""
    def ask() -> str:
        request = {**body("qwen-4-instruct", "cats", 16), "stream": False, "temperature": 1.0, "seed": 7}
        reply = httpx.post(f"{server}/v1/chat/completions", json=request,
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
        assert reply.status_code == 200
        return json.dumps(reply.json()["choices"][0], sort_keys=True)

    alone = ask()
    beside = Stream(server, "qwen-4", "the sea", LONG)
    assert beside.first.wait(120)
    assert ask() == alone
    beside.leave.set()
    wait_for(lambda: sequences(server, "qwen-4") == (0, 0), timeout_s=60, what="every slot free again")
