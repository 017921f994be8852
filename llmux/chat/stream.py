"""ChatEvents -> the OpenAI chat wire format, streamed (SSE) or whole.

The streaming contract clients depend on (OpenCode, Open WebUI, the openai SDKs):
- the first chunk carries ``delta.role = "assistant"``;
- reasoning goes in ``delta.reasoning_content``;
- a tool call's first delta carries index, id, type, function.name and ``arguments: ""``;
  later deltas carry only argument text;
- ``finish_reason`` is ``"tool_calls"`` exactly when tool calls were emitted;
- with ``stream_options.include_usage`` a last chunk has ``choices: []`` and ``usage``;
- an error after the headers is a ``data: {"error": ...}`` chunk, then the finish chunk (and
  usage) the stream still owes: nothing but usage follows a ``finish_reason``;
- ``data: [DONE]`` always ends.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable

from llmux.chat.events import (
    ChatEvent,
    ContentDelta,
    Finish,
    Logprobs,
    ReasoningDelta,
    ToolCallArgs,
    ToolCallStart,
    Usage,
)
from llmux.engines.base import TokenLogprob
from llmux.protocol.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionTokensDetails,
    Delta,
    FunctionCall,
    PromptTokensDetails,
    ResponseMessage,
    TokenLogprobOut,
    ToolCall,
    ToolCallDelta,
    ToolCallFunctionDelta,
    TopLogprob,
    UsageOut,
)
from llmux.protocol.sse import sse


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def _usage(finish: Finish) -> UsageOut:
    u = finish.usage
    return UsageOut(
        u.prompt_tokens,
        u.completion_tokens,
        u.total_tokens,
        PromptTokensDetails(cached_tokens=u.cached_tokens),
        CompletionTokensDetails(reasoning_tokens=u.reasoning_tokens),
    )


class ChunkEncoder:
    """Turns one response's events into SSE bytes; remembers what the contract needs."""

    def __init__(self, model: str, *, include_usage: bool, id: str | None = None) -> None:
        self.id = id or completion_id()
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.tool_calls = 0
        self.started = False
        """The role chunk is out."""
        self.finished: Finish | None = None

    def _chunk(self, delta: Delta, finish_reason: str | None = None, logprobs: ChoiceLogprobs | None = None) -> bytes:
        choice = ChunkChoice(0, delta, finish_reason, logprobs)
        return sse(ChatCompletionChunk(self.id, self.created, self.model, [choice]))

    def start(self) -> bytes:
        self.started = True
        return self._chunk(Delta(role="assistant", content=""))

    def event(self, event: ChatEvent) -> bytes:
        if isinstance(event, ContentDelta):
            return self._chunk(Delta(content=event.text)) if event.text else b""
        if isinstance(event, ReasoningDelta):
            return self._chunk(Delta(reasoning_content=event.text)) if event.text else b""
        if isinstance(event, ToolCallStart):
            self.tool_calls += 1
            call = ToolCallDelta(event.index, event.id, "function", ToolCallFunctionDelta(event.name, ""))
            return self._chunk(Delta(tool_calls=[call]))
        if isinstance(event, ToolCallArgs):
            if not event.text:
                return b""
            return self._chunk(
                Delta(tool_calls=[ToolCallDelta(event.index, function=ToolCallFunctionDelta(arguments=event.text))])
            )
        if isinstance(event, Logprobs):
            return self._chunk(Delta(), logprobs=choice_logprobs(event.tokens))
        return self._finish(event)

    def _finish(self, finish: Finish) -> bytes:
        self.finished = finish
        reason = finish_reason(finish, self.tool_calls)
        out = self._chunk(Delta(), reason)
        if self.include_usage:
            out += sse(ChatCompletionChunk(self.id, self.created, self.model, [], usage=_usage(finish)))
        return out

    def abort(self, usage: Usage | None) -> bytes:
        """After an in-band error: the finish chunk (and usage) a stream must still end with,
        unless it was already sent. ``stop``: the OpenAI set has no ``error``."""
        if self.finished is not None:
            return b""
        return self._finish(Finish("stop", usage or Usage(0, 0)))

    def events(self, events: Iterable[ChatEvent]) -> bytes:
        return b"".join(self.event(e) for e in events)


def finish_reason(finish: Finish, tool_calls: int) -> str:
    """``tool_calls`` exactly when calls were emitted, whatever the backend said."""
    if tool_calls:
        return "tool_calls"
    return "stop" if finish.reason == "tool_calls" else finish.reason


class CompletionBuilder:
    """Collects a whole response for ``stream: false``."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[tuple[str, str, list[str]]] = []
        self.logprobs: list[TokenLogprob] | None = None
        self.finished: Finish | None = None

    def add(self, event: ChatEvent) -> None:
        if isinstance(event, ContentDelta):
            self.content.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, ToolCallStart):
            self.calls.append((event.id, event.name, []))
        elif isinstance(event, ToolCallArgs):
            self.calls[-1][2].append(event.text)
        elif isinstance(event, Logprobs):
            self.logprobs = [*(self.logprobs or ()), *event.tokens]
        else:
            self.finished = event

    def build(self) -> ChatCompletion:
        if self.finished is None:
            raise RuntimeError("the backend ended without a Finish event")
        calls = [ToolCall(id=i, function=FunctionCall(name, "".join(args))) for i, name, args in self.calls]
        content = "".join(self.content)
        message = ResponseMessage(
            role="assistant",
            # OpenAI sends content null next to tool calls; clients test for it.
            content=None if calls and not content.strip() else content,
            tool_calls=calls or None,
            reasoning_content="".join(self.reasoning) or None,
        )
        reason = finish_reason(self.finished, len(calls))
        return ChatCompletion(
            completion_id(),
            int(time.time()),
            self.model,
            [Choice(0, message, reason, choice_logprobs(self.logprobs) if self.logprobs is not None else None)],
            _usage(self.finished),
        )


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def choice_logprobs(tokens: Iterable[TokenLogprob]) -> ChoiceLogprobs:
    """OpenAI's ``logprobs.content``: each token as text (a piece of a multi-byte character
    shows as U+FFFD; ``bytes`` is exact) with its alternatives."""
    return ChoiceLogprobs(
        [
            TokenLogprobOut(
                _text(t.token),
                t.logprob,
                list(t.token),
                [TopLogprob(_text(raw), lp, list(raw)) for raw, lp in t.top],
            )
            for t in tokens
        ]
    )
