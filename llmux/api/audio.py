"""/v1/audio: transcriptions, speech, and the voice and model lists Open WebUI reads.

The lists are public (``opt={"public": True}``): Open WebUI fetches them without a key. They
never load a model.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import UploadFile
from litestar.response import Stream

from llmux.api.audio_wire import (
    AudioModelList,
    AudioModelOut,
    DurationUsage,
    SegmentOut,
    SpeechRequest,
    TranscriptionForm,
    TranscriptionJson,
    TranscriptionVerbose,
    VoiceList,
    VoiceOut,
    WordOut,
)
from llmux.api.decoding import decode_json, invalid_request
from llmux.audio.languages import language_name
from llmux.audio.service import MB, AudioService
from llmux.audio.subtitles import to_srt, to_vtt
from llmux.backends.base import TranscribeOptions, Transcript
from llmux.errors import InvalidRequest
from llmux.registry import ModelType, Registry

MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
_TEXT = "text/plain; charset=utf-8"


def _service(request: Request[Any, Any, Any]) -> AudioService:
    service: AudioService | None = getattr(request.app.state, "audio", None)
    if service is None:  # created on first use: the state is shared by every request
        service = AudioService(request.app.state.registry, request.app.state.controller)
        request.app.state.audio = service
    return service


async def _read_form(request: Request[Any, Any, Any]) -> tuple[TranscriptionForm, bytes]:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("Send the audio as a multipart file field named 'file'.", param="file")
    fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str) and k != "file"}
    grans = [*form.getall("timestamp_granularities[]", []), *form.getall("timestamp_granularities", [])]
    fields.pop("timestamp_granularities[]", None)
    fields["timestamp_granularities"] = grans
    try:
        parsed = msgspec.convert(fields, TranscriptionForm, strict=False)
    except msgspec.ValidationError as exc:
        raise invalid_request(exc) from None
    return parsed, await upload.read()


def _render(transcript: Transcript, form: TranscriptionForm) -> Response[Any]:
    fmt = form.response_format
    if fmt == "text":
        return Response(transcript.text, media_type=_TEXT)
    if fmt == "srt":
        return Response(to_srt(transcript.segments), media_type=_TEXT)
    if fmt == "vtt":
        return Response(to_vtt(transcript.segments), media_type=_TEXT)
    usage = DurationUsage(seconds=round(transcript.duration, 3))
    if fmt == "json":
        return Response(msgspec.json.encode(TranscriptionJson(transcript.text, usage)), media_type="application/json")
    grans = form.timestamp_granularities or ["segment"]
    segments = [
        SegmentOut(i, 0, round(s.start, 3), round(s.end, 3), s.text, [], form.temperature, 0.0, 0.0, 0.0)
        for i, s in enumerate(transcript.segments)
    ]
    words = [WordOut(w.word.strip(), round(w.start, 3), round(w.end, 3)) for s in transcript.segments for w in s.words]
    body = TranscriptionVerbose(
        language=language_name(transcript.language),
        duration=round(transcript.duration, 3),
        text=transcript.text,
        segments=segments if "segment" in grans else None,
        words=words if "word" in grans else None,
        usage=usage,
    )
    return Response(msgspec.json.encode(body), media_type="application/json")


@post("/audio/transcriptions", status_code=200)
async def transcriptions(request: Request[Any, Any, Any]) -> Response[Any]:
    form, data = await _read_form(request)
    options = TranscribeOptions(
        prompt=form.prompt,
        temperature=form.temperature,
        word_timestamps="word" in form.timestamp_granularities and form.response_format == "verbose_json",
    )
    transcript = await _service(request).transcribe(form.model, data, options, form.language)
    return _render(transcript, form)


@post("/audio/speech", status_code=200)
async def speech(request: Request[Any, Any, Any]) -> Response[Any]:
    body = decode_json(await request.body(), SpeechRequest)
    if body.stream_format == "sse":
        raise InvalidRequest("stream_format 'sse' is not supported; use 'audio'.", param="stream_format")
    stream = body.stream or body.stream_format == "audio"
    service = _service(request)
    job = service.prepare_speech(body.model, body.input, body.voice, body.response_format, body.speed, body.language, stream)
    pieces = await service.start_speech(job)
    media_type = MEDIA_TYPES[job.format]
    if stream:
        return Stream(pieces, media_type=media_type)
    audio = b"".join([piece async for piece in pieces])
    return Response(audio, media_type=media_type)


@get("/audio/voices", opt={"public": True})
async def voices(request: Request[Any, Any, Any]) -> VoiceList:
    model = request.query_params.get("model")
    return VoiceList([VoiceOut(v.id, v.name) for v in _service(request).voices(model)])


@get("/audio/models", opt={"public": True})
async def audio_models(request: Request[Any, Any, Any]) -> AudioModelList:
    """TTS models by default (Open WebUI fills its TTS model menu from this); ``?type=asr``."""
    kind = request.query_params.get("type", "tts")
    if kind not in ("tts", "asr"):
        raise InvalidRequest("type must be 'tts' or 'asr'.", param="type")
    names = _service(request).models(ModelType(kind))
    return AudioModelList([AudioModelOut(id=name, type=kind) for name in names])


HANDLERS = [transcriptions, speech, voices, audio_models]


def router(registry: Registry, guards: list[Any]) -> Router:
    """The /v1/audio routes; uploads may be as large as ``limits.max_audio_mb`` plus the
    multipart framing (a larger file is a 413 naming the limit)."""
    limit = int(registry.limits.max_audio_mb * MB) + MB
    return Router(path="/v1", route_handlers=HANDLERS, guards=guards, request_max_body_size=limit)
