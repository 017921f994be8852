"""Honest health, admission and clients that go away (issue 10), through the real app."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from llmux.app import create_app
from llmux.registry import ApiKeysFile, PhysicalModel, Registry
from tests.support.backends import InstantChat

pytestmark = pytest.mark.asyncio

KEY = "CHANGE-ME-open-webui-placeholder"


class Broken(InstantChat):
    def load(self) -> float | None:
        raise FileNotFoundError(2, "No such file or directory", f"/srv/llmux/models/{self.spec.id}/model.gguf")


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    return Broken(spec, registry) if spec.id == "qwen3.5-9b-fp8" else InstantChat(spec, registry)


def client(app: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://llmux", headers={"Authorization": f"Bearer {KEY}"}
    )


def chat_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


async def test_health_is_degraded_with_reasons_after_a_failed_load(reference: Registry, keys: ApiKeysFile) -> None:
    app = create_app(reference, keys, factory=factory)
    async with client(app) as http:
        assert (await http.get("/health")).json()["status"] == "ok"
        r = await http.post("/v1/chat/completions", json=chat_body("Qwen3.5-9B-FP8-Thinking"))
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        assert "model.gguf" in r.json()["error"]["message"] and "/srv" not in r.text
        health = await http.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "degraded"
        assert any("qwen3.5-9b-fp8" in reason and "broken" in reason for reason in body["reasons"])
        assert "/srv" not in health.text
        assert (await http.get("/health/ready")).status_code == 200  # degraded, still ready


async def test_health_and_readiness_say_shutting_down_with_503(reference: Registry, keys: ApiKeysFile) -> None:
    app = create_app(reference, keys, factory=factory)
    async with client(app) as http:
        app.state.services.controller.begin_shutdown()
        health = await http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "shutting_down"
        ready = await http.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        r = await http.post("/v1/chat/completions", json=chat_body("Qwen3.5-4B-Instruct"))
        assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
