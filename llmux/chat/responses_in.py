"""A Responses API request -> the chat completions request it means, or a 400 naming the
parameter llmux cannot honour.

The conversation becomes chat messages: ``instructions`` the first system message; earlier
reasoning goes on the assistant turn that follows it (as ``reasoning_content``); consecutive
``function_call`` items are one assistant turn's tool calls; a ``function_call_output`` is a
``tool`` message. Only ``function`` tools reach the model: other tool types (hosted web
search, shells, custom grammars) are left out, not refused — clients such as Codex always
send some.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import msgspec

from llmux.protocol.chat import (
    ChatCompletionRequest,
    ContentPart,
    FunctionCall,
    FunctionDef,
    ImagePart,
    ImageUrl,
    JsonSchemaFormat,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)
from llmux.protocol.errors import InvalidRequest
from llmux.protocol.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputImage,
    InputItem,
    InputPart,
    InputText,
    MessageItem,
    OutputText,
    ReasoningItem,
    ResponsesRequest,
)

INCLUDABLE = frozenset({"reasoning.encrypted_content", "message.output_text.logprobs"})


def refuse_unsupported(request: ResponsesRequest) -> None:
    """Every parameter llmux cannot honour is a 400 naming it (none is silently dropped)."""
    stateless = "llmux keeps no responses: send the whole conversation as `input`, with `store: false`."
    checks: list[tuple[bool, str, str]] = [
        (request.previous_response_id is not None, "previous_response_id", stateless),
        (request.store is True, "store", stateless),
        (request.conversation is not None, "conversation", stateless),
        (request.background is True, "background", "Background responses are not supported."),
        (request.prompt is not None, "prompt", "Stored prompt templates are not supported."),
        (request.truncation == "auto", "truncation", "Only `truncation: disabled` is supported."),
        (request.max_tool_calls is not None, "max_tool_calls", "`max_tool_calls` is not supported."),
        (
            request.service_tier not in (None, "auto", "default"),
            "service_tier",
            "Only the `auto`/`default` service tier exists here.",
        ),
        (
            bool(request.text and request.text.verbosity not in (None, "medium")),
            "text.verbosity",
            "Only `medium` verbosity is supported.",
        ),
    ]
    for failed, param, message in checks:
        if failed:
            raise InvalidRequest(message, param=param, code="unsupported_parameter")
    for i, name in enumerate(request.include or ()):
        if name not in INCLUDABLE:
            raise InvalidRequest(f"`include` value {name!r} is not supported.", param=f"include[{i}]")


def chat_request(request: ResponsesRequest) -> ChatCompletionRequest:
    refuse_unsupported(request)
    messages = _leading_system([*_instructions(request.instructions), *_messages(_items(request.input))])
    if not messages:
        raise InvalidRequest("`input` holds no messages.", param="input")
    tools = [_tool(i, t) for i, t in enumerate(request.tools or ()) if t.get("type") == "function"]
    logprobs = "message.output_text.logprobs" in (request.include or ()) or request.top_logprobs is not None
    return ChatCompletionRequest(
        model=request.model,
        messages=messages,
        stream=request.stream,
        tools=tools or None,
        tool_choice=_tool_choice(request.tool_choice) if tools else None,
        max_completion_tokens=request.max_output_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        reasoning_effort=request.reasoning.effort if request.reasoning else None,  # per family: chat.behaviour
        response_format=_format(request),
        logprobs=logprobs or None,
        top_logprobs=request.top_logprobs if logprobs else None,
        user=request.user,
    )


def _format(request: ResponsesRequest) -> ResponseFormat | None:
    """``text.format`` is chat's ``response_format`` with the schema's fields one level up."""
    fmt = request.text.format if request.text else None
    if not fmt:
        return None
    try:
        if fmt.get("type") == "json_schema":
            schema = msgspec.convert({k: v for k, v in fmt.items() if k != "type"}, JsonSchemaFormat)
            return ResponseFormat(type="json_schema", json_schema=schema)
        return msgspec.convert(fmt, ResponseFormat)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Malformed `text.format`: {exc}", param="text.format") from None


def _instructions(instructions: str | None) -> list[Message]:
    return [Message(role="system", content=instructions)] if instructions else []


def _leading_system(messages: list[Message]) -> list[Message]:
    """``instructions`` and the leading system/developer messages (Codex sends several) as one
    system message: chat templates take one, first (Qwen's refuses a system message elsewhere,
    and none knows ``developer``). A later developer message is a system message in place."""
    head = 0
    while head < len(messages) and messages[head].role in ("system", "developer"):
        head += 1
    rest = [msgspec.structs.replace(m, role="system") if m.role == "developer" else m for m in messages[head:]]
    if not head:
        return rest
    text = "\n\n".join(_plain(m.content) for m in messages[:head])
    return [Message(role="system", content=text), *rest]


def _plain(content: str | list[ContentPart] | None) -> str:
    if isinstance(content, list):
        return "".join(p.text for p in content if isinstance(p, TextPart))
    return content or ""


def _items(raw: str | list[dict[str, Any]]) -> list[InputItem]:
    if isinstance(raw, str):
        return [MessageItem(role="user", content=raw)]
    items: list[InputItem] = []
    for i, item in enumerate(raw):
        if "type" not in item and "role" in item:
            item = {**item, "type": "message"}  # the SDK's EasyInputMessage
        try:
            items.append(msgspec.convert(item, InputItem))
        except msgspec.ValidationError as exc:
            raise InvalidRequest(f"Unsupported or malformed input item: {exc}", param=f"input[{i}]") from None
    return items


def _messages(items: list[InputItem]) -> list[Message]:
    out: list[Message] = []
    reasoning: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, ReasoningItem):
            reasoning.append(_reasoning_text(item, i))
        elif isinstance(item, FunctionCallItem):
            call = ToolCall(id=item.call_id, function=FunctionCall(item.name, item.arguments))
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and not reasoning:
                last.tool_calls = [*(last.tool_calls or ()), call]
            else:
                out.append(
                    Message(role="assistant", content=None, tool_calls=[call], reasoning_content=_take(reasoning))
                )
        elif isinstance(item, FunctionCallOutputItem):
            out.append(
                Message(role="tool", tool_call_id=item.call_id, content=_text_only(item.output, f"input[{i}].output"))
            )
        else:
            content = item.content if isinstance(item.content, str) else _parts(item.content, i)
            out.append(
                Message(
                    role=item.role,
                    content=content,
                    reasoning_content=_take(reasoning) if item.role == "assistant" else None,
                )
            )
    return out


def _take(reasoning: list[str]) -> str | None:
    text = "\n".join(t for t in reasoning if t)
    reasoning.clear()
    return text or None


def _reasoning_text(item: ReasoningItem, i: int) -> str:
    if item.content:
        return "".join(c.text for c in item.content)
    if item.encrypted_content:
        try:
            return base64.b64decode(item.encrypted_content, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidRequest(
                "This `encrypted_content` was not made by llmux.", param=f"input[{i}].encrypted_content"
            ) from None
    return "".join(s.text for s in item.summary)


def _parts(parts: list[InputPart], i: int) -> list[ContentPart]:
    out: list[ContentPart] = []
    for j, part in enumerate(parts):
        if isinstance(part, InputImage):
            if part.image_url is None:
                raise InvalidRequest(
                    "Images by `file_id` are not supported; send `image_url`.", param=f"input[{i}].content[{j}]"
                )
            out.append(ImagePart(ImageUrl(part.image_url, part.detail)))
        else:
            out.append(TextPart(part.refusal if not isinstance(part, InputText | OutputText) else part.text))
    return out


def _text_only(output: str | list[InputPart], param: str) -> str:
    if isinstance(output, str):
        return output
    if any(isinstance(p, InputImage) for p in output):
        raise InvalidRequest("Images in a function call's output are not supported.", param=param)
    return "".join(p.text for p in output if isinstance(p, InputText | OutputText))


def _tool(i: int, raw: dict[str, Any]) -> Tool:
    try:
        return Tool(function=msgspec.convert({k: v for k, v in raw.items() if k != "type"}, FunctionDef))
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Malformed function tool: {exc}", param=f"tools[{i}]") from None


def _tool_choice(choice: str | dict[str, Any] | None) -> Literal["none", "auto", "required"] | dict[str, Any] | None:
    if choice is None:
        return None
    for literal in ("auto", "none", "required"):
        if choice == literal:
            return literal
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest("Only `auto`, `none`, `required` or a named function tool can be chosen.", param="tool_choice")
