"""At the end of the shutdown grace llmux ends in-flight answers itself, each with its proper
ending (issue 10), rather than letting uvicorn cut the connection: a chat stream gets an error
event (``shutting_down``), its finish chunk and ``[DONE]``; a Responses stream ``response.failed``;
a non-streamed chat a 503. The engines stop and the leases come back. Test engines that generate
until cancelled (tests/support/slow_engines.py), the real app over ASGI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from llmux.app import create_app
from tests.support import slow_engines as slow

pytestmark = pytest.mark.asyncio

HI = [{"role": "user", "content": "hi"}]
CASES = {
    "chat stream": ("/v1/chat/completions", {"model": "talk", "messages": HI, "stream": True}),
    "chat": ("/v1/chat/completions", {"model": "talk", "messages": HI}),
    "responses stream": ("/v1/responses", {"model": "talk", "input": "hi", "stream": True}),
}


async def cut_at_shutdown(tmp: Path, path: str, body: dict[str, Any]) -> tuple[httpx2.Response, Any]:
    app = create_app(slow.registry(tmp), slow.KEYS, factory=slow.factory, shutdown_grace_s=0.4, keepalive_s=0.05)
    controller = app.state.services.controller
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://llmux", timeout=60) as http:
        request = asyncio.ensure_future(http.post(path, json=body, headers={"Authorization": f"Bearer {slow.KEY}"}))
        async with asyncio.timeout(30):
            while not any(m.leases for m in controller.status()):  # generating under its lease
                await asyncio.sleep(0.005)
        controller.begin_shutdown()
        response = await asyncio.wait_for(request, 30)
        async with asyncio.timeout(30):
            while any(m.leases for m in controller.status()):  # released once the engine stopped
                await asyncio.sleep(0.005)
    return response, controller


@pytest.mark.parametrize(("path", "body"), CASES.values(), ids=CASES.keys())
async def test_answers_in_flight_at_the_end_of_the_grace_end_properly(
    tmp_path: Path, path: str, body: dict[str, Any]
) -> None:
    response, _ = await cut_at_shutdown(tmp_path, path, body)
    if not body.get("stream"):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "shutting_down"
        return
    assert response.status_code == 200
    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    if path == "/v1/chat/completions":
        errors = [json.loads(d)["error"]["code"] for d in data if d.startswith('{"error"')]
        assert errors == ["shutting_down"]
        finishes = [d for d in data if '"finish_reason":"' in d]
        assert len(finishes) == 1 and data[-1] == "[DONE]"
    else:
        last = json.loads(data[-1])
        assert last["type"] == "response.failed"
        assert last["response"]["error"]["code"] == "shutting_down"
