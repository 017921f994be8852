"""The real app behind the official ``openai`` client, over ASGI (no sockets, no threads)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import openai
from litestar import Litestar

from llmux.app import create_app
from llmux.registry import Registry, load_keys, load_models

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
DEMO_KEY = load_keys(DEMO / "api_keys.yaml").keys[0].key


def demo_registry() -> Registry:
    return load_models(DEMO / "models.yaml")


def demo_app(registry: Registry | None = None) -> Litestar:
    return create_app(registry or demo_registry(), load_keys(DEMO / "api_keys.yaml"))


def raw_client(app: Litestar, key: str | None = DEMO_KEY) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://llmux", headers=headers, timeout=120)


def openai_client(app: Litestar) -> openai.AsyncOpenAI:
    transport = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://llmux", timeout=120)
    return openai.AsyncOpenAI(base_url="http://llmux/v1", api_key=DEMO_KEY, http_client=transport, max_retries=0)


def words(text: str) -> list[str]:
    """Case, punctuation and spacing removed: what a transcript is compared on."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()
