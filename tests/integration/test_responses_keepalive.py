"""A Responses stream stays alive through a long prompt evaluation (Codex drops a connection
that is silent for minutes), and a client that leaves during it gets its lease released."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmux.app import create_app
from llmux.engines.base import Prompted, TextJob
from llmux.engines.text import Item
from llmux.registry import ApiKeysFile, PhysicalModel, Registry
from tests.support.backends import InstantChat
from tests.support.server import serve, wait_for

KEY = "CHANGE-ME-open-webui-placeholder"


class SlowPrefill(InstantChat):
    """"Evaluates the prompt" until the test opens the gate or the job is cancelled."""

    gate = threading.Event()
    cancelled = threading.Event()

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        while not self.gate.wait(0.01):
            if cancel.is_set():
                SlowPrefill.cancelled.set()
                return
        yield Prompted(1, 100)
        yield "answer"
        yield None


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    return SlowPrefill(spec, registry)


@pytest.fixture(scope="module")
def server(reference: Registry, keys: ApiKeysFile) -> Iterator[str]:
    with serve(create_app(reference, keys, factory=factory, keepalive_s=0.05)) as url:
        yield url


def test_keepalives_flow_during_the_prompt_and_a_leaver_frees_the_lease(server: str) -> None:
    SlowPrefill.gate.clear()
    SlowPrefill.cancelled.clear()
    body = {"model": "Qwen3.5-4B-Instruct", "input": "x", "stream": True}
    with httpx.stream("POST", f"{server}/v1/responses", json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        seen = b""
        raw = r.iter_raw()
        while seen.count(b": keep-alive") < 3:  # the model is loaded: these come from the prompt's evaluation
            seen += next(raw)
        assert b"response.in_progress" in seen and b"output_item" not in seen
    wait_for(SlowPrefill.cancelled.is_set, what="the engine to see the cancel flag")
    wait_for(lambda: all(m["leases"] == 0 for m in httpx.get(f"{server}/health").json()["loaded"]),
             what="the lease to be released")


def test_the_answer_follows_the_keepalives(server: str) -> None:
    SlowPrefill.gate.clear()
    body = {"model": "Qwen3.5-4B-Instruct", "input": "x", "stream": True}
    with httpx.stream("POST", f"{server}/v1/responses", json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        raw = r.iter_raw()
        seen = next(raw)
        while b": keep-alive" not in seen:
            seen += next(raw)
        SlowPrefill.gate.set()
        rest = b"".join(raw)
    assert b"response.completed" in rest and b'"text":"answer"' in rest
