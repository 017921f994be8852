"""A remote ``openai`` model served by a server that is not llmux: llama-cpp-python's own
``python -m llama_cpp.server`` (its ``[server]`` extra is in the test install) with SmolLM2 and an
API key. Its SSE framing, its model naming (the GGUF's path) and its error shapes
(``{"detail": ...}``) differ from llmux's; the gateway relays and maps them all the same."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from llmux.app import create_app
from llmux.registry import load_keys, load_models
from tests.fixtures.chat_backends import smollm2_path
from tests.support.server import free_port, serve, wait_for

pytestmark = pytest.mark.slow
SERVER_KEY = "sk-llama-cpp-server-key-0123456789"
CLIENT_KEY = "sk-gateway-client-key-abcdef0123456789"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("llama-server") / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()), "--n_threads", "1",
         "--n_ctx", "2048", "--n_gpu_layers", "0", "--port", str(port), "--api_key", SERVER_KEY, "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, "llama_cpp.server exited"
        try:
            return httpx.get(f"{url}/v1/models", timeout=1).status_code == 401  # it answers, and wants its key
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 60, "llama_cpp.server to answer")
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def gateway(llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("gateway")
    options = f"base_url: '{llama_server}/v1', health_interval_s: 0.2, read_timeout_s: 120"
    (config / "models.yaml").write_text(
        "physical:\n"
        f"  there: {{type: llm, backend: openai, options: {{{options}, api_key: {SERVER_KEY}}}}}\n"
        f"  wrong-key: {{type: llm, backend: openai, options: {{{options}, api_key: sk-not-the-servers-key}}}}\n"
        "virtual:\n  smollm2-there: {physical: there}\n  smollm2-wrong-key: {physical: wrong-key}\n"
    )
    (config / "api_keys.yaml").write_text(f"keys:\n  - {{name: tester, key: {CLIENT_KEY}}}\n")
    with serve(create_app(load_models(config / "models.yaml"), load_keys(config / "api_keys.yaml"))) as url:
        yield url


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=120)


def test_chat_through_llama_cpp_server(gateway: str) -> None:
    reply = client(gateway).chat.completions.create(model="smollm2-there", max_tokens=8, temperature=0,
                                                    messages=[{"role": "user", "content": "Say hello."}])
    assert reply.model == "smollm2-there" and reply.choices[0].message.content.strip()
    chunks = list(client(gateway).chat.completions.create(
        model="smollm2-there", max_tokens=8, stream=True, messages=[{"role": "user", "content": "Say hello."}]))
    assert {c.model for c in chunks} == {"smollm2-there"}  # not the GGUF's path on the other box
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_a_wrong_key_for_the_upstream_is_the_gateways_fault(gateway: str) -> None:
    def down() -> bool:
        states = {u["id"]: u for u in httpx.get(f"{gateway}/health", timeout=5).json()["upstreams"]}
        return states["wrong-key"]["state"] == "down" and states["there"]["state"] == "up"

    wait_for(down, 30, "the wrong key's health poll to fail")
    health = httpx.get(f"{gateway}/health", timeout=5).json()
    assert any("credentials" in reason for reason in health["reasons"])
    with pytest.raises(openai.APIStatusError) as refused:
        client(gateway).chat.completions.create(model="smollm2-wrong-key", max_tokens=2,
                                                messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 503  # down since its poll: refused at once, not sent


def test_its_error_for_a_bad_value_comes_back_as_an_openai_error(gateway: str) -> None:
    """llmux does not check ``temperature`` for an upstream; llama_cpp.server refuses it (with a 500)."""
    response = httpx.post(f"{gateway}/v1/chat/completions", headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                          json={"model": "smollm2-there", "temperature": "hot",
                                "messages": [{"role": "user", "content": "hi"}]}, timeout=60)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error" and "temperature" in error["message"]
