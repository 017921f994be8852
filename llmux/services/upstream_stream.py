"""The wire side of relaying to an upstream (``services.upstream``): server-sent events paced
with keep-alives, the model renamed, a broken stream ended the way clients expect, the upstream
response closed whatever happens, and the virtual model's defaults filled into a body."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
import httpx
import httpx_sse
import msgspec

from llmux.engines.upstream import Upstream, UpstreamError, close_response
from llmux.protocol.errors import LlmuxError, ServiceUnavailable, error_body
from llmux.protocol.sse import sse
from llmux.registry import ModelType, PhysicalModel, VirtualModel
from llmux.services.pacing import Cutoff
from llmux.services.ratelimit import DEFAULT_COMPLETION_RESERVE
from llmux.services.record import note

T = TypeVar("T")
Kind = Literal["chat", "responses", "speech", "embeddings"]


@dataclass(frozen=True, slots=True)
class Relay:
    """A validated request for an upstream: where it goes and what is sent."""

    upstream: Upstream
    kind: Kind
    model: str
    """The name the client used (responses name it)."""
    body: bytes
    stream: bool


@dataclass(frozen=True, slots=True)
class Relayed:
    """What goes back to the client: bytes, or a stream of them."""

    media_type: str
    body: bytes | None = None
    stream: AsyncGenerator[bytes, None] | None = None


close = close_response
"""``engines.upstream.close_response``: shielded from anyio's repeated cancellation."""


async def server_events(response: httpx.Response) -> AsyncIterator[httpx_sse.ServerSentEvent]:
    async for event in httpx_sse.EventSource(response).aiter_sse():
        yield event


async def before_cutoff(work: Coroutine[Any, Any, T], cutoff: Cutoff | None) -> T:
    """``work``, or a 503 ``shutting_down`` if the shutdown grace's cutoff comes first (a plain
    request then gets its status from llmux, not a connection uvicorn cuts)."""
    if cutoff is None:
        return await work
    task, ending = asyncio.ensure_future(work), asyncio.ensure_future(cutoff.wait())
    try:
        await asyncio.wait({task, ending}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            raise ServiceUnavailable(
                "llmux is shutting down: this request was ended at the end of the shutdown grace.", code="shutting_down"
            )
        return task.result()
    finally:
        ending.cancel()
        if not task.done():  # the cutoff, or the client left: the relay's own cleanup closes its response
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})


class StreamState:
    """What a relayed stream has said so far: enough to end it properly if the upstream fails."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = "chatcmpl-upstream"
        self.created = int(time.time())
        self.finish: str | None = None
        self.done = False
        self.sequence = 0

    def frame(self, event: httpx_sse.ServerSentEvent, upstream: Upstream) -> bytes:
        try:
            payload = msgspec.json.decode(event.data)
        except msgspec.DecodeError:
            raise upstream.malformed("a stream event that is not JSON") from None
        if not isinstance(payload, dict):
            raise upstream.malformed("a stream event that is not a JSON object")
        if "error" in payload and "choices" not in payload:  # the upstream's own in-band error
            detail = payload["error"] if isinstance(payload["error"], dict) else {"message": str(payload["error"])}
            raise UpstreamError(502, f"The upstream failed mid-stream: {detail.get('message')}", code="upstream_error")
        rename(payload, self.model)
        self.id = payload.get("id", self.id) if isinstance(payload.get("id"), str) else self.id
        self.sequence = (
            payload.get("sequence_number", self.sequence)
            if isinstance(payload.get("sequence_number"), int)
            else self.sequence
        )
        for choice in payload.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        note_usage(payload)
        head = f"event: {event.event}\n".encode() if event.event and event.event != "message" else b""
        return head + sse(payload)

    def abort(self, error: LlmuxError, kind: Kind) -> bytes:
        """The error in-band, then what the stream must still end with."""
        if kind == "responses":
            failed = {
                "type": "error",
                "code": error.code,
                "message": error.message,
                "param": None,
                "sequence_number": self.sequence + 1,
            }
            return b"event: error\n" + sse(failed)
        out = sse(error_body(error))
        if self.finish is None:
            self.finish = "stop"  # the OpenAI set has no ``error`` (strict parsers reject others)
            out += sse(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
            )
        return out


def rename(payload: dict[str, Any], model: str) -> None:
    """Name the client's model: a completion or chunk's ``model``, a Responses event's
    ``response.model``."""
    if "model" in payload:
        payload["model"] = model
    inner = payload.get("response")
    if isinstance(inner, dict) and "model" in inner:
        inner["model"] = model


def note_usage(payload: dict[str, Any]) -> None:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        inner = payload.get("response")
        usage = inner.get("usage") if isinstance(inner, dict) else None
    if isinstance(usage, dict):
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        note(prompt_tokens=prompt, completion_tokens=completion)


def apply_defaults(fields: dict[str, Any], virtual: VirtualModel, physical: PhysicalModel) -> None:
    """The virtual model's defaults, for fields the request leaves out (a request's own values win)."""
    b = virtual.behaviour
    if physical.type is ModelType.LLM:
        for name, value in msgspec.structs.asdict(b.sampling).items():
            if value is not None:
                fields.setdefault(name, value)
    elif physical.type is ModelType.TTS and b.voice is not None:
        fields.setdefault("voice", b.voice)


def reservation(kind: Kind, fields: dict[str, Any], size: int) -> int:
    """Tokens a relayed request reserves under its key's tokens-per-minute limit (settled with
    the usage the upstream reports): the body at about four bytes a token, plus the completion
    budget it asks for."""
    if kind == "speech":
        return 0
    if kind == "embeddings":
        return size // 4 + 1
    budget = fields.get("max_completion_tokens") or fields.get("max_tokens") or fields.get("max_output_tokens")
    return size // 4 + (budget if isinstance(budget, int) and budget > 0 else DEFAULT_COMPLETION_RESERVE)


def note_audio_seconds(body: bytes) -> None:
    """A transcription's length as the upstream reports it (``usage.seconds``, or verbose_json's
    ``duration``), for the key's usage."""
    try:
        answer = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return
    if not isinstance(answer, dict):
        return
    usage = answer.get("usage")
    seconds = usage.get("seconds") if isinstance(usage, dict) else answer.get("duration")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        note(audio_s=round(float(seconds), 3))
