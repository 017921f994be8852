"""``GET /v1/admin/upstreams`` (what the dashboard polls) over real HTTP, against a real upstream
(``tests/support/hostile.py``) and a closed port: each upstream's state, last error and relays
in flight, for admin keys only, and never its key or the credentials in its URL."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmux.app import create_app
from llmux.registry import load_keys, load_models
from tests.support.hostile import Hostile, hostile_upstream
from tests.support.http import demo_app, raw_client
from tests.support.server import free_port, serve, wait_for

ADMIN_KEY = "sk-test-boss-0123456789abcdef"
USER_KEY = "sk-test-user-0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-secret-fedcba9876543210"
URL_PASSWORD = "pw-in-the-url-5e3r3t"
URL_QUERY_KEY = "query-key-5e3r3t"
DEMO_ADMIN_KEY = "sk-llmux-demo-admin-not-a-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Hostile, int]]:
    with hostile_upstream() as hostile:
        config: Path = tmp_path_factory.mktemp("gateway")
        closed = free_port()  # nothing listens there
        (config / "models.yaml").write_text(
            "physical:\n"
            f"  near: {{type: llm, backend: openai, options: {{base_url: '{hostile.url}/waiting/v1',"
            f" model: upstream-name, api_key: {UPSTREAM_KEY}, read_timeout_s: 60, health_interval_s: 0.2}}}}\n"
            f"  gone: {{type: llm, backend: openai, options: {{base_url:"
            f" 'http://operator:{URL_PASSWORD}@127.0.0.1:{closed}/v1?api-key={URL_QUERY_KEY}',"
            f" api_key: {UPSTREAM_KEY}, health_interval_s: 0.2, connect_timeout_s: 2}}}}\n"
            "virtual:\n  near: {physical: near}\n  gone: {physical: gone}\n"
        )
        (config / "api_keys.yaml").write_text(
            f"keys:\n  - {{name: boss, key: {ADMIN_KEY}, role: admin}}\n  - {{name: user, key: {USER_KEY}}}\n"
        )
        app = create_app(load_models(config / "models.yaml"), load_keys(config / "api_keys.yaml"), keepalive_s=0.2)
        with serve(app) as url:
            yield url, hostile, closed


def upstreams(url: str) -> dict[str, dict[str, Any]]:
    response = httpx.get(f"{url}/v1/admin/upstreams", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    for secret in (UPSTREAM_KEY, URL_PASSWORD, URL_QUERY_KEY, "operator"):
        assert secret not in response.text
    return {u["id"]: u for u in response.json()["upstreams"]}


def test_only_an_admin_key_reads_the_upstreams(gateway: tuple[str, Hostile, int]) -> None:
    url, _, _ = gateway
    assert httpx.get(f"{url}/v1/admin/upstreams", timeout=10).status_code == 401
    user = httpx.get(f"{url}/v1/admin/upstreams", headers={"Authorization": f"Bearer {USER_KEY}"}, timeout=10)
    assert user.status_code == 403, user.text
    assert set(upstreams(url)) == {"near", "gone"}  # config order kept by the dict


def test_one_up_and_one_down_with_its_error_and_no_secret(gateway: tuple[str, Hostile, int]) -> None:
    url, hostile, closed = gateway
    wait_for(lambda: upstreams(url)["near"]["state"] == "up", 30, "the reachable upstream to be polled up")
    wait_for(lambda: upstreams(url)["gone"]["state"] == "down", 30, "the closed port to be polled down")
    seen = upstreams(url)
    near, gone = seen["near"], seen["gone"]
    assert near["url"] == f"{hostile.url}/waiting/v1" and near["model"] == "upstream-name"
    assert near["last_error"] is None and near["checked_at"] is not None and near["virtual"] == ["near"]
    assert gone["url"] == f"http://127.0.0.1:{closed}/v1"  # no user, password or query
    assert gone["last_error"] and gone["checked_at"] is not None
    assert near["in_flight"] == 0 and gone["in_flight"] == 0
    health = httpx.get(f"{url}/health", timeout=10)
    assert (
        health.json()["status"] == "degraded" and URL_PASSWORD not in health.text and URL_QUERY_KEY not in health.text
    )


def test_a_relay_is_in_flight_until_its_client_leaves(gateway: tuple[str, Hostile, int]) -> None:
    url, _, _ = gateway
    wait_for(lambda: upstreams(url)["near"]["state"] == "up", 30, "the reachable upstream to be polled up")
    body = b'{"model": "near", "messages": [{"role": "user", "content": "hi"}]}'
    port = int(url.rsplit(":", 1)[1])
    # A raw connection: the upstream (``waiting``) never answers, and closing the socket is the
    # client going away, which llmux notices and which ends the relay.
    client = socket.create_connection(("127.0.0.1", port))
    try:
        client.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {USER_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        wait_for(lambda: upstreams(url)["near"]["in_flight"] == 1, 30, "the relay to be counted in flight")
        assert upstreams(url)["gone"]["in_flight"] == 0
    finally:
        client.close()
    wait_for(lambda: upstreams(url)["near"]["in_flight"] == 0, 30, "the relay to end when its client left")


async def test_no_upstream_configured_is_an_empty_list() -> None:
    async with raw_client(demo_app(), key=DEMO_ADMIN_KEY) as client:
        response = await client.get("/v1/admin/upstreams")
    assert response.status_code == 200 and response.json() == {"upstreams": []}
