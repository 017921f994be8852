"""Relayed answers of remote ``openai`` models as Litestar responses (``services.upstream``)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.datastructures import UploadFile

from llmux.api.disconnect import closing_stream
from llmux.protocol.errors import InvalidRequest
from llmux.registry import ModelType
from llmux.services.upstream import Kind, Relayed, UpstreamService

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def relayed(answer: Relayed) -> Response[Any]:
    if answer.stream is not None:
        headers = SSE_HEADERS if answer.media_type.startswith("text/event-stream") else None
        return closing_stream(answer.stream, media_type=answer.media_type, headers=headers)
    return Response(answer.body, media_type=answer.media_type)


async def relay_json(body: bytes, upstream: UpstreamService, kind: Kind, expect: ModelType) -> Response[Any] | None:
    """The upstream's answer when the body names a remote model; None: serve it here."""
    route = upstream.route(body, kind, expect)
    return None if route is None else relayed(await upstream.relay(route))


async def relay_transcription(request: Request[Any, Any, Any], upstream: UpstreamService) -> Response[Any] | None:
    """A transcription for a remote ASR model, relayed as multipart; None: a local model."""
    if not upstream.upstreams:
        return None
    form = await request.form()  # Litestar caches it: the local path reads the same form
    model = form.get("model")
    if not isinstance(model, str):
        return None  # the local path names what is missing
    target = upstream.resolve_form(model, ModelType.ASR)
    if target is None:
        return None
    virtual, remote = target
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("Send the audio as a multipart file field named 'file'.", param="file")
    fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    if virtual.behaviour.language is not None and "language" not in form:
        fields.append(("language", virtual.behaviour.language))
    file = (upload.filename or "audio", await upload.read(), upload.content_type or "application/octet-stream")
    return relayed(await upstream.transcription(remote, fields, file))
