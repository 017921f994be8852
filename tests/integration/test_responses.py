"""POST /v1/responses through a real uvicorn server, driven by the official openai client
(``client.responses.create``, streamed and not) and raw httpx where the wire matters. The
engines are the instant test engines behind the real chat pipeline (real templates, real
parsers), over the shipped reference config."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from llmux.app import create_app
from llmux.registry import ApiKeysFile, Registry
from tests.support.backends import instant_factory
from tests.support.server import serve

KEY = "CHANGE-ME-open-webui-placeholder"
INSTRUCT, THINKING, OSS = "Qwen3.5-4B-Instruct", "Qwen3.5-4B-Thinking", "GPT-OSS-20B-Low"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
           "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}}}
HOSTED = [{"type": "web_search"}, {"type": "local_shell"},
          {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "x"}}]


@pytest.fixture(scope="module")
def server(reference: Registry, keys: ApiKeysFile) -> Iterator[str]:
    app = create_app(reference, keys, factory=instant_factory(), keepalive_s=0.05)
    with serve(app) as url:
        yield url


@pytest.fixture()
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def events(server: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw SSE events of a streamed response, checking the ``event:`` line of each."""
    out = []
    with httpx.stream("POST", f"{server}/v1/responses", json={**body, "stream": True},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                assert event["type"] == name
                out.append(event)
    return out


def check_sequence(stream: list[dict[str, Any]]) -> dict[str, Any]:
    """The invariants every stream keeps; returns the final response."""
    assert [e["sequence_number"] for e in stream] == list(range(len(stream)))
    assert [e["type"] for e in stream[:2]] == ["response.created", "response.in_progress"]
    assert stream[-1]["type"] in ("response.completed", "response.incomplete")
    assert sum(e["type"].startswith("response.") and "response" in e for e in stream) == 3
    final = stream[-1]["response"]
    added = [e for e in stream if e["type"] == "response.output_item.added"]
    done = [e for e in stream if e["type"] == "response.output_item.done"]
    assert [e["output_index"] for e in added] == [e["output_index"] for e in done] == list(range(len(final["output"])))
    assert [e["item"]["id"] for e in added] == [e["item"]["id"] for e in done] == [i["id"] for i in final["output"]]
    assert [e["item"] for e in done] == final["output"]
    for e in stream:
        if "item_id" in e:
            assert e["item_id"] == final["output"][e["output_index"]]["id"]
    return final


def test_plain_text_non_streamed(client: openai.OpenAI) -> None:
    r = client.responses.create(model=INSTRUCT, input="hello the weather", instructions="Be brief.",
                                metadata={"k": "v"})
    assert r.status == "completed" and r.model == INSTRUCT and r.object == "response"
    assert r.output_text == "echo: hello the weather"
    assert [i.type for i in r.output] == ["message"] and r.output[0].id.startswith("msg_")
    assert r.instructions == "Be brief." and r.metadata == {"k": "v"}
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens and r.usage.output_tokens > 0


def test_streamed_text_has_the_whole_event_sequence(server: str, client: openai.OpenAI) -> None:
    stream = events(server, {"model": INSTRUCT, "input": [{"role": "user", "content": "one two"}]})
    final = check_sequence(stream)
    assert [e["type"] for e in stream if "delta" not in e["type"]] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e["delta"] for e in stream if e["type"] == "response.output_text.delta")
    assert text.strip() == "echo: one two" == final["output"][0]["content"][0]["text"]
    # The SDK's own stream reader agrees.
    with client.responses.stream(model=INSTRUCT, input="one two") as s:
        got = s.get_final_response()
    assert got.output_text == "echo: one two"


def test_reasoning_comes_before_the_message(server: str, client: openai.OpenAI) -> None:
    r = client.responses.create(model=THINKING, input="hi")
    assert [i.type for i in r.output] == ["reasoning", "message"]
    assert "thinking=True" in r.output[0].content[0].text and r.output[0].id.startswith("rs_")
    final = check_sequence(events(server, {"model": THINKING, "input": "hi"}))
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"]


def test_function_call_streamed_and_not(server: str, client: openai.OpenAI) -> None:
    r = client.responses.create(model=INSTRUCT, input="Paris", tools=[*HOSTED, WEATHER])  # type: ignore[list-item]
    calls = [i for i in r.output if i.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"echo": "Paris"}
    assert calls[0].call_id and calls[0].id.startswith("fc_") and r.tools[0].name == "get_weather"
    stream = events(server, {"model": INSTRUCT, "input": "Paris", "tools": [*HOSTED, WEATHER]})
    final = check_sequence(stream)
    call = final["output"][-1]
    deltas = "".join(e["delta"] for e in stream if e["type"] == "response.function_call_arguments.delta")
    (done,) = [e for e in stream if e["type"] == "response.function_call_arguments.done"]
    assert deltas == done["arguments"] == call["arguments"] and done["name"] == call["name"] == "get_weather"


def test_a_tool_loop_sends_the_output_back(client: openai.OpenAI) -> None:
    first = client.responses.create(model=INSTRUCT, input="Paris", tools=[WEATHER])  # type: ignore[list-item]
    call = first.output[-1]
    history: list[Any] = [{"role": "user", "content": "Paris"}, *[i.model_dump(exclude_none=True) for i in first.output],
                          {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}]
    second = client.responses.create(model=INSTRUCT, input=history)
    assert second.output_text == "echo: sunny, 21 C"


def test_reasoning_round_trips_as_encrypted_content(client: openai.OpenAI) -> None:
    first = client.responses.create(model=THINKING, input="hi", include=["reasoning.encrypted_content"])
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    history = [{"role": "user", "content": "hi"},
               {"type": "reasoning", "id": reasoning.id, "summary": [], "encrypted_content": reasoning.encrypted_content},
               *[i.model_dump(exclude_none=True) for i in first.output[1:]], {"role": "user", "content": "again"}]
    assert client.responses.create(model=THINKING, input=history).status == "completed"  # type: ignore[arg-type]


def test_max_output_tokens_makes_an_incomplete_response(server: str, client: openai.OpenAI) -> None:
    r = client.responses.create(model=INSTRUCT, input="a b c d e f", max_output_tokens=2)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 2
    stream = events(server, {"model": INSTRUCT, "input": "a b c d e f", "max_output_tokens": 2})
    assert check_sequence(stream)["status"] == "incomplete" and stream[-1]["type"] == "response.incomplete"


def _png() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_image_input(client: openai.OpenAI) -> None:
    content = [{"type": "input_text", "text": "what is it"}, {"type": "input_image", "image_url": _png()}]
    r = client.responses.create(model=INSTRUCT, input=[{"role": "user", "content": content}])  # type: ignore[list-item]
    assert r.status == "completed" and "<image>" in r.output_text
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(model=OSS, input=[{"role": "user", "content": content}])  # type: ignore[list-item]
    assert exc.value.body["code"] == "vision_not_supported"  # type: ignore[index]
    assert exc.value.body["param"] == "input"  # type: ignore[index]


@pytest.mark.parametrize(("extra", "param"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"store": True}, "store"),
    ({"background": True}, "background"),
    ({"include": ["file_search_call.results"]}, "include[0]"),
    ({"tool_choice": {"type": "web_search"}, "tools": [WEATHER]}, "tool_choice"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0]"),
])
def test_what_cannot_be_honoured_is_a_400_naming_it(server: str, extra: dict[str, Any], param: str) -> None:
    body = {"model": INSTRUCT, "input": "hi", **extra}
    for stream in (False, True):
        r = httpx.post(f"{server}/v1/responses", json={**body, "stream": stream},
                       headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"


def test_store_false_is_fine(client: openai.OpenAI) -> None:
    assert client.responses.create(model=INSTRUCT, input="hi", store=False).status == "completed"


def test_a_refusal_names_this_apis_param(server: str) -> None:
    r = httpx.post(f"{server}/v1/responses", headers={"Authorization": f"Bearer {KEY}"},
                   json={"model": THINKING, "input": "hi", "text": {"format": {"type": "json_object"}}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "text.format"
