"""Per-key models, rate limits and usage, through real HTTP with the official openai client
(``api_keys.yaml``'s ``models:`` and ``limits:``, ``GET /v1/usage``, the admin API). Engines
are the instant test backends; one held engine keeps a stream open for as long as a test
needs (a reservation and a concurrent request that stay put, whatever the machine's speed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmux.app import create_app
from llmux.engines.base import Prompted, TextJob
from llmux.engines.text import Item
from llmux.registry import ApiKey, ApiKeysFile, PhysicalModel, Registry
from llmux.registry.config import KeyLimits
from tests.support.backends import InstantChat
from tests.support.server import serve, wait_for

HELD = "GPT-OSS-20B-Uncensored-Low"  # its physical model runs the held engine
FAST = "Qwen3.5-4B-Instruct"
ADMIN = "sk-test-admin-0123456789abcdef"


class Held(InstantChat):
    """Streams ``tick`` pieces until the request is cancelled (the client closes the stream)."""

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        yield Prompted(1, 100_000)
        yield "<|channel|>final<|message|>"
        while not cancel.wait(0.05):  # slow enough that a held stream uses few of its tokens
            yield "tick "


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    return Held(spec, registry) if spec.id == "gpt-oss-20b-uncensored" else InstantChat(spec, registry)


def key(name: str, **limits: int) -> ApiKey:
    models = limits.pop("models_only", None)
    return ApiKey(
        name=name,
        key=f"sk-test-{name}-0123456789abcdef",
        models=(FAST, "whisper-1") if models else None,
        limits=KeyLimits(**limits),
    )


KEYS = ApiKeysFile(
    keys=(
        key("free"),
        key("narrow", models_only=1),
        key("rpm", requests_per_minute=2),
        key("tpm", tokens_per_minute=500),
        key("single", concurrent_requests=1),
        key("counted"),
        ApiKey(name="admin", key=ADMIN, role="admin"),
    )
)


@pytest.fixture(scope="module")
def server(reference: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = create_app(reference, KEYS, factory=factory, keepalive_s=0.05, data_dir=tmp_path_factory.mktemp("data"))
    with serve(app) as url:
        yield url


def client(url: str, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=f"sk-test-{name}-0123456789abcdef", max_retries=0)


def chat(c: openai.OpenAI, model: str = FAST, **kwargs: Any) -> Any:
    kwargs.setdefault("max_tokens", 16)
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello there"}], **kwargs
    )


def test_a_key_sees_and_uses_only_its_models(server: str) -> None:
    narrow = client(server, "narrow")
    # Allowing the alias whisper-1 allows the virtual model it names (one model); aliases are not listed.
    assert [m.id for m in narrow.models.list()] == [FAST, "cohere-transcribe"]
    assert chat(narrow).parse().choices[0].message.content
    with pytest.raises(openai.NotFoundError) as refused:
        chat(narrow, "Qwen3.5-4B-Thinking")
    with pytest.raises(openai.NotFoundError) as missing:
        chat(narrow, "no-such-model")
    # Worded like a model that does not exist: the client cannot tell which names are served.
    assert refused.value.body["code"] == missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert "does not exist" in refused.value.message
    with pytest.raises(openai.NotFoundError):
        narrow.models.retrieve("Qwen3.5-4B-Thinking")
    assert len(client(server, "free").models.list().data) > 1


def test_requests_per_minute_429_with_openai_headers(server: str) -> None:
    c = client(server, "rpm")
    first, second = chat(c), chat(c)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert [first.headers["x-ratelimit-remaining-requests"], second.headers["x-ratelimit-remaining-requests"]] == [
        "1",
        "0",
    ]
    assert "x-ratelimit-limit-tokens" not in first.headers  # no token limit on this key
    with pytest.raises(openai.RateLimitError) as refused:
        chat(c, stream=True)  # decided before the stream's headers: a plain 429
    headers = refused.value.response.headers
    assert int(headers["retry-after"]) >= 1 and int(headers["retry-after-ms"]) > 0
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    body = refused.value.body
    assert body["code"] == "rate_limit_exceeded" and body["type"] == "requests"  # type: ignore[index]


def test_tokens_per_minute_reserve_while_running_and_settle_after(server: str) -> None:
    c = client(server, "tpm")
    with c.chat.completions.with_streaming_response.create(
        model=HELD, messages=[{"role": "user", "content": "go"}], max_tokens=100_000, stream=True
    ) as held:
        # The whole minute is reserved (max_tokens capped at the limit) until this stream ends.
        assert held.headers["x-ratelimit-limit-tokens"] == "500"
        assert held.headers["x-ratelimit-remaining-tokens"] == "0"
        lines = held.iter_lines()  # kept: a dropped iterator closes the stream
        next(lines)
        # This one needs the whole minute's tokens too (capped max_tokens): refused until the
        # held stream's reservation is settled, however slowly the machine gets here.
        with pytest.raises(openai.RateLimitError) as refused:
            chat(c, max_tokens=100_000)
        assert refused.value.body["type"] == "tokens"  # type: ignore[index]
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert next(lines) is not None  # still streaming: the refusal was the reservation's doing
    # Settled with the tokens it really used (a few "tick"s): most of the minute comes back at
    # once, so a request reserving 300 more is admitted as soon as the stream's line is written;
    # the refill alone (about 8 tokens a second) would take 36 s for that.
    wait_for(lambda: _admitted(c, max_tokens=300), 20, "the reservation to be settled")


def _admitted(c: openai.OpenAI, max_tokens: int = 1) -> bool:
    try:
        chat(c, max_tokens=max_tokens)
    except openai.RateLimitError:
        return False
    return True


def test_concurrent_requests(server: str) -> None:
    c = client(server, "single")
    with c.chat.completions.with_streaming_response.create(
        model=HELD, messages=[{"role": "user", "content": "go"}], stream=True
    ) as held:
        lines = held.iter_lines()  # kept: a dropped iterator closes the stream
        next(lines)
        with pytest.raises(openai.RateLimitError) as refused:
            chat(c)
        assert "concurrent" in refused.value.message
        assert next(lines) is not None  # still running
    wait_for(lambda: _admitted(c), 60, "the running request to end")


def test_usage_of_the_calling_key_and_of_all_keys(server: str) -> None:
    c = client(server, "counted")
    answers = [chat(c).parse() for _ in range(3)]
    prompt = sum(a.usage.prompt_tokens for a in answers)
    completion = sum(a.usage.completion_tokens for a in answers)
    with pytest.raises(openai.NotFoundError):
        chat(c, "no-such-model")  # not usage
    mine = c.get("/usage", cast_to=httpx.Response, options={"params": {"group_by": "model,day"}}).json()
    assert mine["object"] == "usage" and mine["group_by"] == ["day", "model"]
    (row,) = mine["data"]
    assert row["model"] == FAST and "client" not in row
    assert (row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (3, prompt, completion)
    assert row["total_tokens"] == prompt + completion
    assert mine["total"]["requests"] == 3

    admin = httpx.get(
        f"{server}/v1/admin/usage", params={"group_by": "client"}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    clients = {r["client"]: r for r in admin.json()["data"]}
    assert clients["counted"]["requests"] == 3
    assert "sk-test" not in admin.text  # names, never keys
    # A user key may not read the admin view, and bad parameters are 400s naming them.
    assert httpx.get(f"{server}/v1/admin/usage", headers={"Authorization": f"Bearer {c.api_key}"}).status_code == 403
    bad = httpx.get(f"{server}/v1/usage", params={"start": "yesterday"}, headers={"Authorization": f"Bearer {c.api_key}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "start"
    bad = httpx.get(f"{server}/v1/usage", params={"group_by": "client"}, headers={"Authorization": f"Bearer {c.api_key}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"
    future = c.get("/usage", cast_to=httpx.Response, options={"params": {"start": "2999-01-01"}}).json()
    assert future["data"] == [] or future["data"][0]["requests"] == 0


def test_admin_reload_is_atomic(reference: Registry, tmp_path: Path) -> None:
    path = tmp_path / "api_keys.yaml"
    path.write_text(f'keys:\n  - {{name: admin, key: "{ADMIN}", role: admin}}\n  - {{name: old, key: "sk-old-0123456789abcdef"}}\n')
    from llmux.registry import load_keys

    app = create_app(reference, load_keys(path), factory=factory, keys_path=path)
    with serve(app) as url:
        admin = {"Authorization": f"Bearer {ADMIN}"}

        def models(secret: str) -> int:
            return httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code

        path.write_text("keys:\n  - {name: new, key: short}\n")  # invalid: the old keys stay
        bad = httpx.post(f"{url}/v1/admin/keys/reload", headers=admin)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "config_error"
        assert "short" not in bad.text  # the bad value is a key: never echoed
        path.write_text(f'keys:\n  - {{name: admin, key: "{ADMIN}", role: admin}}\n  - {{name: x, key: "sk-x-0123456789abcdef", models: [nope]}}\n')
        assert httpx.post(f"{url}/v1/admin/keys/reload", headers=admin).status_code == 422  # unknown model
        assert models("sk-old-0123456789abcdef") == 200
        path.write_text(f'keys:\n  - {{name: admin, key: "{ADMIN}", role: admin}}\n  - {{name: new, key: "sk-new-0123456789abcdef"}}\n')
        good = httpx.post(f"{url}/v1/admin/keys/reload", headers=admin)
        assert good.status_code == 200 and good.json()["clients"] == ["admin", "new"]
        assert models("sk-new-0123456789abcdef") == 200
        assert models("sk-old-0123456789abcdef") == 401
