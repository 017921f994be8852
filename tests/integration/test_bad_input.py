"""Bad input from issue 10: each is a 4xx OpenAI error naming what is wrong (or is served),
never a 500 — and nothing is loaded for a refused request. The real demo app over ASGI."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.http import demo_app, raw_client

pytestmark = pytest.mark.asyncio

HI = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "smollm2", "messages": HI, "max_tokens": 1, **fields}


async def post_json(path: str, body: str) -> Any:
    app = demo_app()
    async with raw_client(app) as http:
        r = await http.post(path, content=body, headers={"content-type": "application/json"})
        loaded = [m for m in app.state.services.controller.status() if m.state != "unloaded"]
    return r, loaded


def deep_tool(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return {"type": "function", "function": {"name": "f", "parameters": schema}}


# A 1×1 PNG: the image-count bound is checked before any image is looked at, or a model's vision.
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="}}


def big_tool(kb: int) -> dict[str, Any]:
    """A shallow tool whose schema is ``kb`` KB (each alone is far below the per-request total)."""
    return {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "description": "x" * kb * 1024}}}


CASES = {
    "JSON nested 1,000 deep": (json.dumps(chat())[:-1] + ',"x":' + "[" * 1000 + "]" * 1000 + "}", None),
    "tool parameters nested 400 deep": (json.dumps(chat(tools=[deep_tool(400)])), "tools[0].function.parameters"),
    "12,000 messages": (json.dumps(chat(messages=HI * 12_000)), "messages"),
    "300,000 stop entries": (json.dumps(chat(stop=["x"] * 300_000)), "stop"),
    "300 tools": (json.dumps(chat(tools=[deep_tool(1)] * 300)), "tools"),
    "17 images (limits.max_images is 16)": (json.dumps(chat(messages=[{"role": "user", "content": [IMAGE] * 17}])),
                                            "messages"),
    "300 KB of tool schemas (limits.max_tool_schema_kb is 256)": (json.dumps(chat(tools=[big_tool(100)] * 3)), "tools"),
}


@pytest.mark.parametrize(("body", "param"), CASES.values(), ids=CASES.keys())
async def test_oversized_or_too_deep_chat_requests_are_400_before_any_load(body: str, param: str | None) -> None:
    r, loaded = await post_json("/v1/chat/completions", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert loaded == []


def multipart(parts: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """(name, extra header lines, value) per part."""
    out = b""
    for name, headers, value in parts:
        out += f'--bb\r\nContent-Disposition: form-data; name="{name}"{headers}\r\n\r\n'.encode() + value + b"\r\n"
    return out + b"--bb--\r\n", "multipart/form-data; boundary=bb"


FORMS = {
    "file sent as a text field": [("model", "", b"whisper-tiny-en"), ("file", "", b"not a file")],
    "invalid UTF-8 in model": [("model", "", b"\xff\xfe"), ("file", '; filename="a.wav"', b"RIFF")],
    "invalid UTF-8 in prompt": [("model", "", b"whisper-tiny-en"), ("prompt", "", b"\xc3\x28"),
                                ("file", '; filename="a.wav"', b"RIFF")],
    "unknown charset": [("model", "\r\nContent-Type: text/plain; charset=klingon", b"whisper-tiny-en"),
                        ("file", '; filename="a.wav"', b"RIFF")],
}


@pytest.mark.parametrize("parts", FORMS.values(), ids=FORMS.keys())
async def test_multipart_oddities_are_400(parts: list[tuple[str, str, bytes]]) -> None:
    body, kind = multipart(parts)
    async with raw_client(demo_app()) as http:
        r = await http.post("/v1/audio/transcriptions", content=body, headers={"content-type": kind})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_speech_input_with_digit_seven_comma_is_spoken() -> None:
    async with raw_client(demo_app()) as http:
        r = await http.post("/v1/audio/speech", json={"model": "hibari", "input": "\U0001f108 apples", "response_format": "wav"})
    assert r.status_code == 200, r.text
    assert r.content.startswith(b"RIFF")


def embed(**fields: Any) -> str:
    return json.dumps({"model": "all-minilm", "input": "hello", **fields})


EMBEDDINGS = {
    "2,049 inputs": (embed(input=["x"] * 2049), "input"),
    "an input of 70,000 characters": (embed(input=["ok", "x" * 70_000]), "input"),
    "token arrays": (embed(input=[[1, 2, 3]]), "input"),
    "a number": (embed(input=7), "input"),
    "dimensions on a fixed-size model": (embed(dimensions=128), "dimensions"),
    "an unknown parameter": (embed(truncate="END"), "truncate"),
    "an unknown encoding": (embed(encoding_format="binary"), "encoding_format"),
}


@pytest.mark.parametrize(("body", "param"), EMBEDDINGS.values(), ids=EMBEDDINGS.keys())
async def test_bad_embedding_requests_are_400_before_any_load(body: str, param: str) -> None:
    r, loaded = await post_json("/v1/embeddings", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert loaded == []
