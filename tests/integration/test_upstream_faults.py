"""The ``openai`` backend against a hostile upstream (``tests/support/hostile.py``): every way an
upstream can fail becomes an OpenAI error body with the right status — before the headers, or
in-band with a proper end once a stream has started — and nothing hangs.

llmux runs under a real uvicorn server; the official ``openai`` client and plain httpx talk to it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import structlog

from llmux.app import create_app
from llmux.registry import load_keys, load_models
from tests.support.hostile import Hostile, hostile_upstream
from tests.support.server import free_port, serve, wait_for

KEY = "sk-gateway-client-0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-secret-fedcba9876543210"
SCENARIOS = ["echo", "garbage", "notobject", "plainjson", "hang", "error400", "vllm400", "error401", "error429",
             "error500", "error503", "cut", "stall", "nodone", "donecut", "badevent", "endless", "waiting", "sick"]

AUDIO = [("tts-json", "echo", "tts"), ("tts-400", "error400", "tts"), ("asr-400", "error400", "asr"),
         ("asr-echo", "echo", "asr")]


def _config(tmp_path: Path, hostile: Hostile) -> Path:
    lines = ["budget_gb: 1", "physical:"]
    for name in SCENARIOS:
        lines += [
            f"  {name}:",
            "    type: llm",
            "    backend: openai",
            f"    options: {{base_url: '{hostile.url}/{name}/v1', model: upstream-name, api_key: {UPSTREAM_KEY},",
            "              read_timeout_s: 1, health_interval_s: 0.2}",
        ]
    for name, scenario, kind in AUDIO:
        lines += [f"  {name}:", f"    type: {kind}", "    backend: openai",
                  f"    options: {{base_url: '{hostile.url}/{scenario}/v1', model: far-{kind}, read_timeout_s: 1,"
                  " health_interval_s: 0.2}"]
    refused = free_port()  # nothing listens there
    lines += ["  refused:", "    type: llm", "    backend: openai",
              f"    options: {{base_url: 'http://127.0.0.1:{refused}/v1', health_interval_s: 30, connect_timeout_s: 2}}"]
    lines += ["virtual:"] + [f"  {n}: {{physical: {n}}}" for n in [*SCENARIOS, *(a[0] for a in AUDIO), "refused"]]
    lines += ["  warm-echo: {physical: echo, behaviour: {sampling: {temperature: 0.3, top_k: 5}}}"]
    (tmp_path / "models.yaml").write_text("\n".join(lines) + "\n")
    (tmp_path / "api_keys.yaml").write_text(f"keys:\n  - {{name: tester, key: {KEY}}}\n")
    return tmp_path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Hostile]]:
    with hostile_upstream() as hostile:
        config = _config(tmp_path_factory.mktemp("gateway"), hostile)
        app = create_app(load_models(config / "models.yaml"), load_keys(config / "api_keys.yaml"), keepalive_s=0.2)
        with serve(app) as url:
            yield url, hostile


def post(url: str, model: str, **body: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


def events(response: httpx.Response) -> list[Any]:
    out = []
    for block in response.text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_pass_through_renames_the_model_injects_the_key_and_keeps_unknown_params(gateway: tuple[str, Hostile]) -> None:
    url, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="warm-echo", messages=[{"role": "user", "content": "hi"}], temperature=0.9,
        extra_body={"guided_json": {"type": "object"}, "repetition_penalty": 1.1},
    )
    assert reply.model == "warm-echo" and reply.system_fingerprint == "hostile-1"
    seen = json.loads(reply.choices[0].message.content)
    seen.pop("raw")
    assert seen["path"] == "/echo/v1/chat/completions"
    assert seen["headers"]["Authorization"] == f"Bearer {UPSTREAM_KEY}"  # the upstream's key, not the client's
    body = seen["body"]
    assert body["model"] == "upstream-name"
    assert body["guided_json"] == {"type": "object"} and body["repetition_penalty"] == 1.1  # unknown: unchanged
    assert body["temperature"] == 0.9 and body["top_k"] == 5  # the request wins; the virtual default fills in
    assert reply.usage.total_tokens == 7


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("garbage", 502, "upstream_bad_response"),
        ("notobject", 502, "upstream_bad_response"),
        ("hang", 504, "upstream_timeout"),
        ("error401", 502, "upstream_auth_failed"),
        ("error500", 502, "upstream_error"),
        ("error503", 503, "model_loading"),
        ("refused", 503, "upstream_unavailable"),
    ],
)
def test_upstream_failures_before_the_answer(gateway: tuple[str, Hostile], model: str, status: int, code: str) -> None:
    response = post(gateway[0], model)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and set(error) == {"message", "type", "param", "code"}
    assert UPSTREAM_KEY not in response.text


def test_the_upstreams_client_errors_are_the_clients(gateway: tuple[str, Hostile]) -> None:
    client = openai.OpenAI(base_url=f"{gateway[0]}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="error400", messages=[{"role": "user", "content": "hi"}])
    assert bad.value.body["message"] == "temperature is too hot" and bad.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as vllm:
        client.chat.completions.create(model="vllm400", messages=[{"role": "user", "content": "hi"}])
    assert vllm.value.body["message"] == "guided_json is malformed"
    limited = post(gateway[0], "error429")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()["error"]["type"] == "rate_limit_error"


def test_a_failing_health_poll_fails_requests_fast(gateway: tuple[str, Hostile]) -> None:
    url, _ = gateway

    def down() -> bool:
        health = httpx.get(f"{url}/health").json()
        return any(u["id"] == "sick" and u["state"] == "down" for u in health["upstreams"])

    wait_for(down, 20, "the sick upstream's poll to fail")
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "degraded" and any("sick" in r for r in health["reasons"])
    response = post(url, "sick")
    assert response.status_code == 503 and response.json()["error"]["code"] == "upstream_unavailable"
    assert "Retry-After" in response.headers
    models = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
    status = {m["id"]: m["status"]["value"] for m in models}
    assert status["sick"] == "unloaded"
    metrics = httpx.get(f"{url}/metrics").text
    assert 'llmux_upstream_up{model="sick"} 0.0' in metrics and 'llmux_upstream_up{model="echo"} 1.0' in metrics
    wait_for(lambda: httpx.get(f"{url}/v1/models/echo", headers={"Authorization": f"Bearer {KEY}"}).json()["status"]["value"] == "loaded", 20, "echo to be up")


@pytest.mark.parametrize(("model", "code"), [("cut", "upstream_error"), ("stall", "upstream_timeout"),
                                            ("nodone", "upstream_bad_response"), ("donecut", "upstream_bad_response"),
                                            ("badevent", "upstream_bad_response")])
def test_a_stream_that_breaks_ends_properly(gateway: tuple[str, Hostile], model: str, code: str) -> None:
    response = post(gateway[0], model, stream=True)
    assert response.status_code == 200
    got = events(response)
    assert got[0]["model"] == model and got[0]["choices"][0]["delta"]["content"] == "Hel"
    assert got[-1] == "[DONE]"
    errors = [e for e in got if isinstance(e, dict) and "error" in e]
    assert [e["error"]["code"] for e in errors] == [code]
    finishes = [c["finish_reason"] for e in got if isinstance(e, dict) for c in e.get("choices", ()) if c.get("finish_reason")]
    assert finishes == ["stop"]  # strict clients (OpenCode) need one


def test_a_stream_answered_with_json_is_a_502(gateway: tuple[str, Hostile]) -> None:
    response = post(gateway[0], "plainjson", stream=True)
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_bad_response"


def test_the_client_leaving_closes_the_upstream_request(gateway: tuple[str, Hostile]) -> None:
    url, hostile = gateway
    body = {"model": "endless", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
    wait_for(hostile.disconnected.is_set, 20, "the upstream to see its client go")


def test_the_openai_client_streams_through(gateway: tuple[str, Hostile]) -> None:
    client = openai.OpenAI(base_url=f"{gateway[0]}/v1", api_key=KEY, max_retries=0)
    stream = client.chat.completions.create(model="nodone", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError):  # the in-band error body is raised by the SDK
        for _ in stream:
            pass


def test_a_responses_stream_that_breaks_ends_with_an_error_event(gateway: tuple[str, Hostile]) -> None:
    response = httpx.post(f"{gateway[0]}/v1/responses", json={"model": "cut", "input": "hi", "stream": True},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert response.status_code == 200
    blocks = [b for b in response.text.split("\n\n") if b.strip() and not b.startswith(":")]
    assert blocks[-1].startswith("event: error\n")
    assert json.loads(blocks[-1].split("data: ", 1)[1])["code"] == "upstream_error"


def test_admin_actions_on_an_upstream_are_refused_plainly(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text("physical:\n  far: {type: llm, backend: openai, options: {base_url: 'http://127.0.0.1:9/v1'}}\n"
                      "virtual:\n  far: {physical: far}\n")
    (tmp_path / "api_keys.yaml").write_text(f"keys:\n  - {{name: boss, key: {KEY}, role: admin}}\n")
    with serve(create_app(load_models(config), load_keys(tmp_path / "api_keys.yaml"))) as url:
        response = httpx.post(f"{url}/v1/admin/models/far/load", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert response.status_code == 400 and "remote upstream" in response.json()["error"]["message"]


def test_a_client_leaving_a_plain_request_closes_the_upstream_request(gateway: tuple[str, Hostile]) -> None:
    """Not streamed: llmux's disconnect watcher cancels the handler, and the relay's connection closes."""
    url, hostile = gateway
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/chat/completions", json={"model": "waiting", "messages": []},
                   headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5)
    wait_for(hostile.hung_up.is_set, 20, "the upstream to see the relay's connection close")


def test_the_upstream_key_is_never_logged(gateway: tuple[str, Hostile]) -> None:
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        for model in ("echo", "error401", "garbage", "refused"):
            post(gateway[0], model)
        wait_for(lambda: sum(e.get("event") == "request.done" for e in logs) >= 4, 20, "the requests' lines")
    assert UPSTREAM_KEY not in repr(logs)


def test_audio_errors_are_mapped_too(gateway: tuple[str, Hostile]) -> None:
    client = openai.OpenAI(base_url=f"{gateway[0]}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.speech.create(model="tts-400", voice="alloy", input="hello")
    assert bad.value.body["message"] == "temperature is too hot"
    with pytest.raises(openai.InternalServerError) as json_not_audio:
        client.audio.speech.create(model="tts-json", voice="alloy", input="hello")
    assert json_not_audio.value.status_code == 502 and json_not_audio.value.body["code"] == "upstream_bad_response"
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(model="asr-400", file=("a.wav", b"RIFF....WAVE"))


def test_a_transcription_is_relayed_as_multipart(gateway: tuple[str, Hostile]) -> None:
    url, hostile = gateway
    response = httpx.post(f"{url}/v1/audio/transcriptions", headers={"Authorization": f"Bearer {KEY}"},
                          data={"model": "asr-echo", "response_format": "verbose_json", "prompt": "names",
                                "timestamp_granularities[]": ["word", "segment"]},
                          files={"file": ("talk.ogg", b"OggS-not-really", "audio/ogg")}, timeout=30)
    assert response.status_code == 200, response.text
    seen = hostile.seen[-1]
    assert seen["path"] == "/echo/v1/audio/transcriptions"
    assert seen["headers"]["Content-Type"].startswith("multipart/form-data")
    raw = seen["raw"]

    def field(name: str) -> list[str]:
        return re.findall(rf'name="{re.escape(name)}"\r\n\r\n([^\r]*)\r\n', raw)

    assert field("model") == ["far-asr"] and field("prompt") == ["names"]
    assert field("timestamp_granularities[]") == ["word", "segment"] and field("response_format") == ["verbose_json"]
    assert 'filename="talk.ogg"' in raw and "OggS-not-really" in raw


def test_no_request_id_of_llmux_goes_upstream(gateway: tuple[str, Hostile]) -> None:
    """llama-cpp-python's server answers a non-UUID X-Request-ID with a 400."""
    response = post(gateway[0], "echo")
    seen = json.loads(response.json()["choices"][0]["message"]["content"])
    assert "x-request-id" not in {h.lower() for h in seen["headers"]}


def test_a_gateway_shutting_down_refuses_upstream_requests_too(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text("physical:\n  far: {type: llm, backend: openai, options: {base_url: 'http://127.0.0.1:9/v1'}}\n"
                      "virtual:\n  far: {physical: far}\n")
    (tmp_path / "api_keys.yaml").write_text(f"keys:\n  - {{name: tester, key: {KEY}}}\n")
    app = create_app(load_models(config), load_keys(tmp_path / "api_keys.yaml"))
    with serve(app) as url:
        app.state.services.controller.begin_shutdown()
        response = post(url, "far")
    assert response.status_code == 503 and response.json()["error"]["code"] == "shutting_down"


@pytest.mark.parametrize("stream", [True, False])
def test_relays_in_flight_at_the_end_of_the_grace_end_properly(
    gateway: tuple[str, Hostile], tmp_path: Path, stream: bool
) -> None:
    """As local answers do (tests/integration/test_shutdown_cutoff.py): a relayed stream gets an
    error event, its finish chunk and [DONE]; a plain request a 503 — not a connection cut."""
    hostile = gateway[1]
    scenario = "endless" if stream else "waiting"
    config = tmp_path / "models.yaml"
    config.write_text(f"physical:\n  far: {{type: llm, backend: openai, options: {{base_url: '{hostile.url}/{scenario}/v1',"
                      " read_timeout_s: 30}}\nvirtual:\n  far: {physical: far}\n")
    (tmp_path / "api_keys.yaml").write_text(f"keys:\n  - {{name: tester, key: {KEY}}}\n")
    app = create_app(load_models(config), load_keys(tmp_path / "api_keys.yaml"), shutdown_grace_s=0.4, keepalive_s=0.05)
    with serve(app) as url:
        before = len(hostile.seen)
        result: dict[str, httpx.Response] = {}
        asking = threading.Thread(target=lambda: result.update(r=post(url, "far", stream=stream)))
        asking.start()
        wait_for(lambda: len(hostile.seen) > before, 20, "the relay to reach the upstream")
        app.state.services.controller.begin_shutdown()
        asking.join(30)
    response = result["r"]
    if not stream:
        assert response.status_code == 503 and response.json()["error"]["code"] == "shutting_down"
        return
    got = events(response)
    assert [e["error"]["code"] for e in got if isinstance(e, dict) and "error" in e] == ["shutting_down"]
    assert got[-1] == "[DONE]" and got[-2]["choices"][0]["finish_reason"] == "stop"
