"""ChatEvents -> a Responses API response: its stream events, and the whole response.

One builder serves both: a non-streamed request feeds it and keeps only ``response``. Output
items open and close one at a time, in the order the model wrote them (reasoning, text,
function calls — or any interleaving a family produces); whitespace between two items opens
no message. ``parallel_tool_calls: false`` keeps only the first call of a turn.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import msgspec

from llmux.chat.events import ChatEvent, ContentDelta, Finish, Logprobs, ReasoningDelta, ToolCallArgs, ToolCallStart
from llmux.chat.stream import choice_logprobs
from llmux.engines.base import TokenLogprob
from llmux.protocol.responses import (
    IncompleteDetails,
    InputTokensDetails,
    OutputFunctionCall,
    OutputItem,
    OutputMessage,
    OutputReasoning,
    OutputTextPart,
    OutputTokensDetails,
    ReasoningText,
    Response,
    ResponseError,
    ResponseUsage,
    Status,
)
from llmux.protocol.responses_events import (
    ContentPartAdded,
    ContentPartDone,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    OutputTextDone,
    ReasoningTextDelta,
    ReasoningTextDone,
    ResponseCompleted,
    ResponseCreated,
    ResponseFailed,
    ResponseIncomplete,
    ResponseInProgress,
    StreamEvent,
)

_encode = msgspec.json.Encoder().encode


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def response_skeleton(model: str, **fields: Any) -> Response:
    """An in-progress response with no output: what ``response.created`` announces.
    ``fields`` are ``Response``'s own (``tools``, ``tool_choice``, ``parallel_tool_calls`` …)."""
    return Response(
        id=new_id("resp"), created_at=int(time.time()), model=model, status="in_progress", output=[], **fields
    )


def frame(event: StreamEvent) -> bytes:
    """``event: <type>`` plus ``data: <json>``, as OpenAI frames them."""
    tag = str(type(event).__struct_config__.tag)
    return b"event: " + tag.encode() + b"\ndata: " + _encode(event) + b"\n\n"


class _Open(msgspec.Struct):
    kind: str
    index: int
    id: str
    text: list[str]
    call_id: str = ""
    name: str = ""
    logprobs: list[TokenLogprob] = []


class ResponseBuilder:
    def __init__(
        self, skeleton: Response, *, parallel_tool_calls: bool = True, encrypt_reasoning: bool = False
    ) -> None:
        self.response = skeleton
        self.parallel = parallel_tool_calls
        self.encrypt = encrypt_reasoning
        self._seq = 0
        self._open: _Open | None = None
        self._calls = 0
        self._skipping = False
        """Inside a tool call dropped by ``parallel_tool_calls: false``."""
        self._pending: list[TokenLogprob] = []

    def _n(self, events: list[StreamEvent]) -> list[StreamEvent]:
        for event in events:
            event.sequence_number = self._seq
            self._seq += 1
        return events

    def _snapshot(self) -> Response:
        return msgspec.structs.replace(self.response, output=list(self.response.output))

    def start(self) -> list[StreamEvent]:
        snapshot = self._snapshot()
        return self._n([ResponseCreated(response=snapshot), ResponseInProgress(response=snapshot)])

    def feed(self, event: ChatEvent) -> list[StreamEvent]:
        if isinstance(event, ReasoningDelta):
            return self._n(self._text("reasoning", event.text))
        if isinstance(event, ContentDelta):
            return self._n(self._text("message", event.text))
        if isinstance(event, ToolCallStart):
            self._skipping = not self.parallel and self._calls > 0
            if self._skipping:
                return []
            self._calls += 1
            out = self._close("completed")
            self._open = _Open("call", len(self.response.output), new_id("fc"), [], event.id, event.name)
            return self._n([*out, OutputItemAdded(output_index=self._open.index, item=self._item("in_progress"))])
        if isinstance(event, Logprobs):
            # Only a message's tokens have them on this API: kept until a message opens.
            if self._open is not None and self._open.kind == "message":
                self._open.logprobs.extend(event.tokens)
            elif self._open is None or self._open.kind != "call":
                self._pending.extend(event.tokens)
            return []
        if isinstance(event, ToolCallArgs):
            if self._skipping or self._open is None or self._open.kind != "call" or not event.text:
                return []
            self._open.text.append(event.text)
            return self._n(
                [FunctionCallArgumentsDelta(item_id=self._open.id, output_index=self._open.index, delta=event.text)]
            )
        return self._n(self._finish(event))

    def fail(self, code: str, message: str) -> list[StreamEvent]:
        out = self._close("incomplete")
        self.response = msgspec.structs.replace(self.response, status="failed", error=ResponseError(code, message))
        return self._n([*out, ResponseFailed(response=self._snapshot())])

    # ---- items ---------------------------------------------------------------------------

    def _text(self, kind: str, text: str) -> list[StreamEvent]:
        if not text:
            return []
        out: list[StreamEvent] = []
        if self._open is None or self._open.kind != kind:
            if not text.strip():
                return []  # whitespace between items (after </think>, before <tool_call>)
            out = self._close("completed")
            self._open = _Open(kind, len(self.response.output), new_id("rs" if kind == "reasoning" else "msg"), [])
            if kind == "message":
                self._open.logprobs, self._pending = self._pending, []
            empty: OutputTextPart | ReasoningText = ReasoningText("") if kind == "reasoning" else OutputTextPart("")
            out += [
                OutputItemAdded(output_index=self._open.index, item=self._item("in_progress")),
                ContentPartAdded(item_id=self._open.id, output_index=self._open.index, content_index=0, part=empty),
            ]
            text = text.lstrip()
        self._open.text.append(text)
        item_id, index = self._open.id, self._open.index
        if kind == "reasoning":
            out.append(ReasoningTextDelta(item_id=item_id, output_index=index, content_index=0, delta=text))
        else:
            out.append(OutputTextDelta(item_id=item_id, output_index=index, content_index=0, delta=text))
        return out

    def _item(self, status: Status) -> OutputItem:
        open_ = self._open
        assert open_ is not None
        text = "".join(open_.text)
        if open_.kind == "call":
            return OutputFunctionCall(
                id=open_.id, call_id=open_.call_id, name=open_.name, arguments=text, status=status
            )
        if open_.kind == "reasoning":
            done = status != "in_progress"
            secret = base64.b64encode(text.encode()).decode() if self.encrypt and done else None
            return OutputReasoning(
                id=open_.id,
                summary=[],
                content=[ReasoningText(text)] if done else [],
                status=status,
                encrypted_content=secret,
            )
        return OutputMessage(
            id=open_.id,
            status=status,
            content=[OutputTextPart(text, logprobs=_logprobs(open_.logprobs))] if status != "in_progress" else [],
        )

    def _close(self, status: Status) -> list[StreamEvent]:
        open_ = self._open
        if open_ is None:
            return []
        item = self._item(status)
        self.response.output.append(item)
        self._open = None
        item_id, index = open_.id, open_.index
        out: list[StreamEvent]
        if isinstance(item, OutputFunctionCall):
            out = [
                FunctionCallArgumentsDone(item_id=item_id, output_index=index, name=item.name, arguments=item.arguments)
            ]
        elif isinstance(item, OutputReasoning):
            part = item.content[0]
            out = [
                ReasoningTextDone(item_id=item_id, output_index=index, content_index=0, text=part.text),
                ContentPartDone(item_id=item_id, output_index=index, content_index=0, part=part),
            ]
        else:
            text_part = item.content[0]
            out = [
                OutputTextDone(
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    text=text_part.text,
                    logprobs=text_part.logprobs,
                ),
                ContentPartDone(item_id=item_id, output_index=index, content_index=0, part=text_part),
            ]
        return [*out, OutputItemDone(output_index=open_.index, item=item)]

    def _finish(self, finish: Finish) -> list[StreamEvent]:
        incomplete = finish.reason == "length"
        out = self._close("incomplete" if incomplete else "completed")
        u = finish.usage
        self.response = msgspec.structs.replace(
            self.response,
            status="incomplete" if incomplete else "completed",
            usage=ResponseUsage(
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                InputTokensDetails(u.cached_tokens),
                OutputTokensDetails(u.reasoning_tokens),
            ),
            incomplete_details=IncompleteDetails("max_output_tokens") if incomplete else None,
        )
        done = (
            ResponseIncomplete(response=self._snapshot())
            if incomplete
            else ResponseCompleted(response=self._snapshot())
        )
        return [*out, done]


def _logprobs(tokens: list[TokenLogprob]) -> list[Any]:
    return list(choice_logprobs(tokens).content) if tokens else []
