"""The switch policy through the real app (issue 12): two clients alternating between two LLMs
that never fit together are served in runs, not one swap per request; loads take real time in
real threads, and the policy's hold ends on the event loop's own timer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
import pytest

from llmux.app import create_app
from llmux.registry import ApiKeysFile, PhysicalModel, Registry
from tests.support.backends import InstantChat

pytestmark = pytest.mark.asyncio

KEY = "CHANGE-ME-open-webui-placeholder"
LOAD_S = 0.4


class SlowLoad(InstantChat):
    """Loads in ``LOAD_S`` (a weights read, scaled down): the switch cost the policy measures."""

    def load(self) -> float | None:
        time.sleep(LOAD_S)
        return super().load()


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    return SlowLoad(spec, registry)


async def test_two_alternating_clients_are_served_in_runs_not_a_swap_per_request(
    reference: Registry, keys: ApiKeysFile
) -> None:
    app = create_app(reference, keys, factory=factory)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://llmux", headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    ) as http:

        async def agent(model: str, turns: int) -> list[int]:
            codes = []
            for _ in range(turns):
                body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
                codes.append((await http.post("/v1/chat/completions", json=body)).status_code)
            return codes

        results = await asyncio.gather(agent("Qwen3.5-4B-Instruct", 8), agent("GPT-OSS-20B-Low", 8))
        metrics = (await http.get("/metrics")).text
    assert all(code == 200 for codes in results for code in codes)
    controller = app.state.services.controller
    # First come, first served would swap on nearly every one of the 16 requests; once both
    # switches are measured, each model keeps the GPU for its window and serves its client's run.
    assert controller.swaps <= 8, controller.swaps
    assert 'llmux_switch_cost_seconds{model="qwen3.5-4b",phase="load"}' in metrics
