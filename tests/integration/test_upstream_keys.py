"""Per-key models, limits and usage apply to remote ``openai`` models as to local ones: a model
the key may not use is a 404 (before anything is sent upstream), a limit a 429 with its headers,
and the tokens the upstream reports are the key's usage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_models
from llmux.registry.config import KeyLimits
from tests.support.hostile import Hostile, hostile_upstream
from tests.support.server import serve


def _key(name: str, **kwargs: object) -> ApiKey:
    return ApiKey(name=name, key=f"sk-test-{name}-0123456789abcdef", **kwargs)  # type: ignore[arg-type]


KEYS = ApiKeysFile(keys=(
    _key("narrow", models=("echo",)),
    _key("rpm", limits=KeyLimits(requests_per_minute=1)),
    _key("counted"),
))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Hostile]]:
    with hostile_upstream() as hostile:
        config: Path = tmp_path_factory.mktemp("gateway")
        options = "read_timeout_s: 5, health_interval_s: 0.2"
        (config / "models.yaml").write_text(
            "physical:\n"
            f"  echo: {{type: llm, backend: openai, options: {{base_url: '{hostile.url}/echo/v1', {options}}}}}\n"
            f"  other: {{type: llm, backend: openai, options: {{base_url: '{hostile.url}/echo/v1', {options}}}}}\n"
            "virtual:\n  echo: {physical: echo}\n  other: {physical: other}\n"
        )
        app = create_app(load_models(config / "models.yaml"), KEYS, data_dir=config / "data")
        with serve(app) as url:
            yield url, hostile


def client(url: str, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=f"sk-test-{name}-0123456789abcdef", max_retries=0)


def ask(c: openai.OpenAI, model: str = "echo") -> object:
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def test_a_model_the_key_may_not_use_is_not_sent_upstream(gateway: tuple[str, Hostile]) -> None:
    url, hostile = gateway
    before = len(hostile.seen)
    with pytest.raises(openai.NotFoundError):
        ask(client(url, "narrow"), "other")
    assert len(hostile.seen) == before
    assert ask(client(url, "narrow"), "echo")
    assert [m.id for m in client(url, "narrow").models.list()] == ["echo"]


def test_a_rate_limit_is_a_429_with_its_headers(gateway: tuple[str, Hostile]) -> None:
    c = client(gateway[0], "rpm")
    assert ask(c)
    with pytest.raises(openai.RateLimitError) as limited:
        ask(c)
    headers = limited.value.response.headers
    assert headers["Retry-After"] and headers["x-ratelimit-limit-requests"] == "1"


def test_the_upstreams_token_counts_are_the_keys_usage(gateway: tuple[str, Hostile]) -> None:
    c = client(gateway[0], "counted")
    for _ in range(2):
        ask(c)
    usage = c.get("/usage", cast_to=httpx.Response, options={"params": {"group_by": "model"}}).json()
    (row,) = usage["data"]
    assert row["model"] == "echo" and (row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (2, 6, 8)
