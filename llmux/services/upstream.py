"""Requests for remote ``openai`` models, relayed to their upstream server.

What llmux checks itself, before anything is sent: the body is a JSON object, ``model`` names
a model of the endpoint's type, ``stream`` is a boolean, the key may use the model, the body
size (the router's limit). Everything else goes to the upstream **unchanged** (only ``model``
becomes the upstream's name, and the virtual model's defaults fill fields the request leaves
out): parameters llmux does not know — vLLM's ``guided_json``, llama-server's ``n_probs`` — are
the upstream's to honour or to refuse, and its 4xx comes back with its message. None is
dropped. llmux's own prompt bounds (``limits.max_messages``…) protect the local GPU's turn and
do not apply here.

Responses name the model the client asked for. A stream is relayed event by event, with
keep-alive comments while the upstream is silent; a client that goes away closes the upstream
request (its connection is closed, so the upstream stops generating). An upstream that fails
mid-stream ends the stream with an in-band error, and a chat stream still gets its
``finish_reason`` and ``[DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from typing import Any

import httpx
import httpx_sse
import msgspec
import structlog
from prometheus_client.core import GaugeMetricFamily, Metric

from llmux.engines.factory import options_for
from llmux.engines.upstream import Upstream, read_limited
from llmux.protocol.errors import InvalidRequest, LlmuxError, ServiceUnavailable
from llmux.protocol.residency import UpstreamStatus
from llmux.protocol.sse import DONE, KEEPALIVE
from llmux.registry import ModelType, Registry, VirtualModel
from llmux.services import upstream_stream as wire
from llmux.services.access import admit
from llmux.services.pacing import Cutoff, paced
from llmux.services.record import note
from llmux.services.upstream_stream import Kind, Relay, Relayed

log = structlog.get_logger("llmux.upstream")

__all__ = ["Kind", "Relay", "Relayed", "UpstreamService"]
PATHS: dict[Kind, str] = {
    "chat": "chat/completions",
    "responses": "responses",
    "speech": "audio/speech",
    "embeddings": "embeddings",
}
MB = 1024 * 1024
JSON_LIMIT = 64 * MB
"""Largest non-streamed JSON answer read from an upstream."""
AUDIO_LIMIT = 512 * MB
"""Largest non-streamed speech answer read from an upstream."""


class _Head(msgspec.Struct):
    """The two fields routing needs; msgspec skips the rest without building it."""

    model: str
    stream: bool | None = None


class UpstreamService:
    def __init__(
        self,
        registry: Registry,
        *,
        keepalive_s: float = 5.0,
        closing: Callable[[], bool] = lambda: False,
        cutoff: Cutoff | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.cutoff = cutoff
        """The shutdown grace's end: a relayed stream still running then ends with a 503 in-band."""
        self.registry = registry
        self.keepalive_s = keepalive_s
        self.closing = closing
        """True once llmux is shutting down: new requests are refused like local ones (503)."""
        self.upstreams = {
            spec.id: Upstream(spec, options_for(spec), transport=transport)
            for spec in registry.physical.values()
            if spec.remote
        }

    def start(self) -> None:
        for upstream in self.upstreams.values():
            upstream.start()

    async def close(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.close()

    # ---- what /health, /v1/models and the dashboard show -------------------------------------

    def status(self) -> list[UpstreamStatus]:
        return [
            UpstreamStatus(
                id=u.id,
                type=self.registry.physical[u.id].type.value,
                url=u.shown_url,
                model=u.model,
                state={True: "up", False: "down", None: "unknown"}[u.healthy],
                last_error=u.last_error,
                checked_at=u.checked_at,
                virtual=self.registry.virtual_of(u.id),
                in_flight=u.in_flight,
            )
            for u in self.upstreams.values()
        ]

    def problems(self) -> list[str]:
        return [
            f"upstream {u.id} ({u.shown_url}) is down: {u.last_error}"
            for u in self.upstreams.values()
            if u.healthy is False
        ]

    def healthy(self, physical_id: str) -> bool:
        return self.upstreams[physical_id].healthy is True

    def collect(self) -> Iterator[Metric]:
        """A Prometheus collector (registered on the app's metrics registry): read at scrape time."""
        up = GaugeMetricFamily(
            "llmux_upstream_up", "Remote upstreams: 1 while its health poll succeeds.", labels=["model"]
        )
        for u in self.upstreams.values():
            if u.healthy is not None:
                up.add_metric([u.id], 1.0 if u.healthy else 0.0)
        yield up

    # ---- routing --------------------------------------------------------------------------------

    def route(self, body: bytes, kind: Kind, expect: ModelType) -> Relay | None:
        """The relay for a request whose model is remote; None for a local model (or a body the
        local path will refuse with its own 400)."""
        if not self.upstreams:
            return None  # no remote model configured: the local path pays nothing
        try:
            head = msgspec.json.decode(body, type=_Head)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        virtual, physical = self.registry.resolve(head.model, expect=expect)
        if not physical.remote:
            return None
        note(model=head.model, physical=physical.id, upstream=True, stream=bool(head.stream))
        fields = msgspec.json.decode(body)
        if not isinstance(fields, dict):
            raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
        admit(head.model, tokens=wire.reservation(kind, fields, len(body)))  # the key's models and limits: 404/429
        if kind == "speech" and isinstance(fields.get("input"), str):
            note(chars=len(fields["input"]))
        upstream = self._admit(physical.id)
        fields["model"] = upstream.model
        wire.apply_defaults(fields, virtual, physical)
        return Relay(upstream, kind, head.model, msgspec.json.encode(fields), bool(head.stream))

    def resolve_form(self, model: str, expect: ModelType) -> tuple[VirtualModel, Upstream] | None:
        """The upstream behind a multipart request's model (transcriptions), or None."""
        if not self.upstreams:
            return None
        virtual, physical = self.registry.resolve(model, expect=expect)
        if not physical.remote:
            return None
        note(model=model, physical=physical.id, upstream=True)
        admit(model)
        return virtual, self._admit(physical.id)

    def _admit(self, physical_id: str) -> Upstream:
        if self.closing():
            raise ServiceUnavailable("llmux is shutting down", code="shutting_down", retry_after=5)
        upstream = self.upstreams[physical_id]
        upstream.ensure_up()
        return upstream

    # ---- relaying -------------------------------------------------------------------------------

    async def relay(self, relay: Relay) -> Relayed:
        """Send; the first byte of an answer (or its mapped error) comes back before any header
        goes to the client, so a refusal is a proper HTTP error."""
        return await wire.before_cutoff(self._relay(relay), self.cutoff)

    async def _relay(self, relay: Relay) -> Relayed:
        started = time.perf_counter()
        try:
            response = await relay.upstream.send(PATHS[relay.kind], json=relay.body)
        except LlmuxError as exc:
            note(error=exc.code, upstream_status=getattr(exc, "upstream_status", None))
            raise
        note(
            upstream_headers_s=round(time.perf_counter() - started, 4),
            upstream_request_id=response.headers.get("x-request-id"),  # another llmux names its own
        )
        media = response.headers.get("content-type", "application/octet-stream")
        if relay.kind == "speech":
            if media.startswith(("application/json", "text/")):  # an error dressed as a success
                await wire.close(response)
                raise relay.upstream.malformed(f"a {media!r} answer where audio was expected")
            return await self._audio(relay, response, media)
        if relay.stream:
            if not media.startswith("text/event-stream"):
                await wire.close(response)
                raise relay.upstream.malformed(f"a {media!r} response to a streamed request")
            return Relayed("text/event-stream", stream=self._events(relay, response))
        return Relayed("application/json", body=await self._json(relay, response))

    async def transcription(
        self, upstream: Upstream, fields: list[tuple[str, str]], file: tuple[str, bytes, str]
    ) -> Relayed:
        """Multipart, as it came (the model renamed); the answer's format is the upstream's."""
        return await wire.before_cutoff(self._transcription(upstream, fields, file), self.cutoff)

    async def _transcription(
        self, upstream: Upstream, fields: list[tuple[str, str]], file: tuple[str, bytes, str]
    ) -> Relayed:
        data: dict[str, Any] = {}
        for name, value in fields:
            data.setdefault(name, []).append(upstream.model if name == "model" else value)
        response = await upstream.send("audio/transcriptions", files={"file": file}, data=data)
        media = response.headers.get("content-type", "application/json")
        body = await self._read(upstream, response, JSON_LIMIT)
        if media.startswith("application/json"):
            wire.note_audio_seconds(body)
        return Relayed(media, body=body)

    async def _read(self, upstream: Upstream, response: httpx.Response, limit: int) -> bytes:
        try:
            body = await read_limited(response, limit + 1)
        except httpx.HTTPError as exc:
            raise upstream.transport_error(exc) from exc
        finally:
            await wire.close(response)
        if len(body) > limit:
            raise upstream.malformed(f"an answer over {limit // MB} MB")
        return body

    async def _json(self, relay: Relay, response: httpx.Response) -> bytes:
        body = await self._read(relay.upstream, response, JSON_LIMIT)
        try:
            answer = msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise relay.upstream.malformed("an answer that is not JSON") from None
        if not isinstance(answer, dict):
            raise relay.upstream.malformed("a JSON answer that is not an object")
        wire.rename(answer, relay.model)
        wire.note_usage(answer)
        return msgspec.json.encode(answer)

    async def _audio(self, relay: Relay, response: httpx.Response, media: str) -> Relayed:
        if not relay.stream:
            return Relayed(media, body=await self._read(relay.upstream, response, AUDIO_LIMIT))

        async def pieces() -> AsyncGenerator[bytes, None]:
            try:
                async for piece in response.aiter_bytes():
                    yield piece
            except httpx.HTTPError as exc:  # audio has no in-band error: the stream just ends
                note(error=relay.upstream.transport_error(exc).code)
            finally:
                await wire.close(response)

        return Relayed(media, stream=pieces())

    async def _events(self, relay: Relay, response: httpx.Response) -> AsyncGenerator[bytes, None]:
        stream = wire.StreamState(relay.model)
        error: LlmuxError | None = None
        try:
            async with aclosing(paced(wire.server_events(response), self.keepalive_s, self.cutoff)) as events:
                async for event in events:
                    if event is None:
                        yield KEEPALIVE
                    elif event.data == "[DONE]":
                        stream.done = True
                        break
                    else:
                        yield stream.frame(event, relay.upstream)
        except LlmuxError as exc:  # the upstream's, or the shutdown cutoff's
            error = exc
        except (httpx.HTTPError, httpx_sse.SSEError) as exc:
            error = relay.upstream.transport_error(exc)
        finally:
            await wire.close(response)
        if error is None and relay.kind == "chat" and stream.finish is None:
            # cut short, even if with a [DONE] (llama-cpp-python's server ends a stream so when
            # another request arrives): the client must not take a truncated answer for a whole one
            error = relay.upstream.malformed("a stream that ended before its finish_reason")
        if error is not None:
            log.warning("upstream.stream_failed", upstream=relay.upstream.id, error=error.message)
            note(error=error.code)
            yield stream.abort(error, relay.kind)
        note(finish_reason=stream.finish)
        if relay.kind == "chat":
            yield DONE
