"""A Responses API request -> the chat request it means (``chat.responses_in``)."""

from __future__ import annotations

import base64

import msgspec
import pytest

from llmux.chat.responses_in import chat_request
from llmux.protocol.errors import InvalidRequest
from llmux.protocol.responses import ResponsesRequest


def request(**fields: object) -> ResponsesRequest:
    return msgspec.convert({"model": "m", **fields}, ResponsesRequest)


def test_instructions_and_leading_developer_messages_are_one_system_message() -> None:
    chat = chat_request(request(instructions="A.", input=[
        {"role": "developer", "content": [{"type": "input_text", "text": "B."}]},
        {"type": "message", "role": "system", "content": "C."},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": "later"},
    ]))
    assert [(m.role, m.content) for m in chat.messages] == [
        ("system", "A.\n\nB.\n\nC."), ("user", "hi"), ("system", "later")]


def test_reasoning_and_calls_become_one_assistant_turn() -> None:
    secret = base64.b64encode(b"think").decode()
    chat = chat_request(request(input=[
        {"role": "user", "content": "go"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": secret},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{\"a\": 1}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
    ]))
    _user, assistant, out1, out2 = chat.messages
    assert assistant.role == "assistant" and assistant.reasoning_content == "think"
    assert [c.id for c in assistant.tool_calls or ()] == ["c1", "c2"]
    assert (out1.role, out1.tool_call_id, out1.content) == ("tool", "c1", "one") and out2.content == "two"


def test_only_function_tools_reach_the_model() -> None:
    chat = chat_request(request(input="hi", tool_choice={"type": "function", "name": "f"}, tools=[
        {"type": "web_search"}, {"type": "namespace", "name": "n", "tools": []},
        {"type": "function", "name": "f", "parameters": {"type": "object"}}]))
    assert [t.function.name for t in chat.tools or ()] == ["f"]
    assert chat.tool_choice == {"type": "function", "function": {"name": "f"}}


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh"])
def test_reasoning_effort_reaches_chat_unchanged(effort: str) -> None:
    """What a level means is the model family's (``chat.behaviour.with_effort``): ``none`` turns a
    Qwen's thinking off, so it must not become ``low`` on the way."""
    assert chat_request(request(input="x", reasoning={"effort": effort})).reasoning_effort == effort


def test_a_foreign_encrypted_content_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as exc:
        chat_request(request(input=[{"type": "reasoning", "summary": [], "encrypted_content": "gAAAA!!"}]))
    assert exc.value.param == "input[0].encrypted_content"
