"""A streamed chat whose request is cancelled (client gone, or uvicorn's grace period over at
shutdown) keeps its lease until the generation thread has stopped: the model is never unloaded
under a running generation, which for llama.cpp would free memory a decode is using."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from llmux.app import create_app
from llmux.engines.base import Prompted, TextJob
from llmux.engines.text import Item
from llmux.registry import ApiKeysFile, PhysicalModel, Registry
from tests.support.backends import InstantChat
from tests.support.server import serve, wait_for

KEY = "CHANGE-ME-open-webui-placeholder"


class StuckChat(InstantChat):
    """Sends one token, then stays inside one long step (a decode) until the test lets it go."""

    step = threading.Event()
    inside = threading.Event()
    unloaded_while_generating = False
    generating = False

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        StuckChat.generating = True
        try:
            yield Prompted(1, 2)
            yield "first "
            StuckChat.inside.set()
            assert StuckChat.step.wait(20)  # a step that does not look at `cancel`
            yield "second"
        finally:
            StuckChat.generating = False

    def unload(self) -> None:
        StuckChat.unloaded_while_generating |= StuckChat.generating
        super().unload()


def leases(controller: Any, physical: str) -> int:
    return {m.id: m.leases for m in controller.status()}[physical]


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    return StuckChat(spec, registry)


@pytest.mark.slow
def test_a_cancelled_stream_holds_its_lease_until_the_thread_stops(reference: Registry, keys: ApiKeysFile) -> None:
    import httpx

    app = create_app(reference, keys, factory=factory, keepalive_s=0.05)
    controller = app.state.services.controller
    model = "Qwen3.5-4B-Instruct"
    physical = reference.virtual[model].physical
    with serve(app) as url:
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(timeout=10) as client:
            with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {KEY}"}) as response:
                for line in response.iter_lines():
                    if "first" in line:
                        break
        # the client is gone; the generation thread is still inside its step
        assert StuckChat.inside.wait(5)
        finished = app.state.services.metrics.requests.labels("POST", "/v1/chat/completions", "200")
        wait_for(lambda: finished._value.get() == 1, 5, "the server to finish the cancelled request")
        assert leases(controller, physical) == 1, "the lease was given back while the generation thread still runs"
        StuckChat.step.set()
        wait_for(lambda: leases(controller, physical) == 0, 5, "the lease to be released")
    assert not StuckChat.unloaded_while_generating
