"""/v1/audio: transcriptions, speech, and the voice and model lists Open WebUI reads.

The lists are public (``opt={"public": True}``): Open WebUI fetches them without a key. They
never load a model.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import FromQuery

from llmux.api.chat import SSE_HEADERS
from llmux.api.decoding import decode_json, invalid_request
from llmux.api.disconnect import closing_stream
from llmux.api.openapi import Content, Doc, json_of, multipart
from llmux.api.openapi import sse as event_stream
from llmux.api.upstream import relay_json, relay_transcription
from llmux.audio.languages import language_name
from llmux.audio.subtitles import to_srt, to_vtt
from llmux.engines.base import Segment, TranscribeOptions, Transcript
from llmux.protocol.audio import (
    AudioModelList,
    AudioModelOut,
    DurationUsage,
    SegmentOut,
    SpeechAudioDelta,
    SpeechAudioDone,
    SpeechRequest,
    TranscriptionForm,
    TranscriptionJson,
    TranscriptionVerbose,
    TranscriptTextDelta,
    TranscriptTextDone,
    VoiceList,
    VoiceOut,
    WordOut,
)
from llmux.protocol.errors import ErrorBody, InvalidRequest, LlmuxError, error_body
from llmux.protocol.sse import sse
from llmux.registry import ModelType
from llmux.services.audio import AudioService
from llmux.services.upstream import UpstreamService

MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_TEXT = "text/plain; charset=utf-8"
TRANSCRIPTION_DOC = Doc(
    body=(multipart(TranscriptionForm, files=("file",)),),
    ok=(
        json_of(TranscriptionJson, TranscriptionVerbose),
        Content("text/plain"),
        event_stream(TranscriptTextDelta, TranscriptTextDone, ErrorBody, done=False),
    ),
    ok_description="The transcript: JSON for json/verbose_json, text for text/srt/vtt, events for stream=true",
)
SPEECH_DOC = Doc(
    body=(json_of(SpeechRequest),),
    ok=(
        *(Content(media) for media in dict.fromkeys(MEDIA_TYPES.values())),
        event_stream(SpeechAudioDelta, SpeechAudioDone, ErrorBody, done=False),
    ),
    ok_description="The audio, in response_format (as speech.audio.delta events for stream_format sse)",
)


async def _read_form(request: Request[Any, Any, Any]) -> tuple[TranscriptionForm, bytes]:
    try:
        form = await request.form()
    except (UnicodeDecodeError, LookupError) as exc:  # a field that is not UTF-8, an unknown charset
        raise InvalidRequest(
            f"A multipart field could not be decoded ({type(exc).__name__}); send UTF-8 text fields.",
            code="invalid_multipart",
        ) from None
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
    if parsed.stream and parsed.response_format not in ("json", "text"):
        raise InvalidRequest(
            "A streamed transcription answers text events: response_format must be json or text.", param="stream"
        )
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


async def joined(pieces: AsyncGenerator[bytes, None]) -> bytes:
    """All the pieces; a cancelled request (its client left) closes the synthesis at once,
    rather than whenever the garbage collector finalises the generator."""
    async with aclosing(pieces):
        return b"".join([piece async for piece in pieces])


async def transcript_events(pieces: AsyncGenerator[Segment | Transcript, None]) -> AsyncGenerator[bytes, None]:
    """``transcript.text.delta`` per recognised segment, then ``transcript.text.done``; the
    deltas joined are the done event's text. A backend that recognises the whole clip at once
    sends one delta with all of it."""
    sent = ""
    try:
        async with aclosing(pieces):
            async for piece in pieces:
                if isinstance(piece, Segment):
                    if piece.text:
                        delta = f" {piece.text}" if sent else piece.text
                        sent += delta
                        yield sse(TranscriptTextDelta(delta=delta))
                    continue
                if not sent and piece.text:
                    yield sse(TranscriptTextDelta(delta=piece.text))
                yield sse(TranscriptTextDone(text=piece.text))
    except LlmuxError as exc:  # after the headers: reported in band, as the chat stream does
        yield sse(error_body(exc))


async def speech_events(pieces: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """``speech.audio.delta`` (base64 of the encoded audio) per piece, then ``speech.audio.done``."""
    try:
        async with aclosing(pieces):
            async for piece in pieces:
                yield sse(SpeechAudioDelta(audio=base64.b64encode(piece).decode()))
        yield sse(SpeechAudioDone())
    except LlmuxError as exc:
        yield sse(error_body(exc))


class AudioController(Controller):
    """Uploads may be as large as ``limits.max_audio_mb`` plus the multipart framing (the app
    sets ``request_max_body_size``; a larger file is a 413 naming the limit)."""

    path = "/audio"

    @post("/transcriptions", status_code=200, opt={"openapi": TRANSCRIPTION_DOC})
    async def transcriptions(
        self,
        request: Request[Any, Any, Any],
        audio: NamedDependency[AudioService],
        upstream: NamedDependency[UpstreamService],
    ) -> Response[Any]:
        if (relayed := await relay_transcription(request, upstream)) is not None:
            return relayed
        form, data = await _read_form(request)
        options = TranscribeOptions(
            prompt=form.prompt,
            temperature=form.temperature,
            word_timestamps="word" in form.timestamp_granularities and form.response_format == "verbose_json",
        )
        job = await audio.prepare_transcription(form.model, data, options, form.language)
        if form.stream:
            events = transcript_events(await audio.start_transcription(job))
            return closing_stream(events, media_type="text/event-stream", headers=SSE_HEADERS)
        return _render(await audio.transcribe_job(job), form)

    @post("/speech", status_code=200, opt={"openapi": SPEECH_DOC})
    async def speech(
        self,
        request: Request[Any, Any, Any],
        audio: NamedDependency[AudioService],
        upstream: NamedDependency[UpstreamService],
    ) -> Response[Any]:
        raw = await request.body()
        if (relayed := await relay_json(raw, upstream, "speech", ModelType.TTS)) is not None:
            return relayed
        body = decode_json(raw, SpeechRequest)
        job = audio.prepare_speech(body)
        pieces = await audio.start_speech(job)
        if body.stream_format == "sse":
            return closing_stream(speech_events(pieces), media_type="text/event-stream", headers=SSE_HEADERS)
        if job.stream:
            return closing_stream(pieces, media_type=MEDIA_TYPES[job.format])
        return Response(await joined(pieces), media_type=MEDIA_TYPES[job.format])

    @get("/voices", opt={"public": True})
    async def voices(self, audio: NamedDependency[AudioService], model: FromQuery[str | None] = None) -> VoiceList:
        return VoiceList([VoiceOut(v.id, v.name) for v in audio.voices(model)])

    @get("/models", opt={"public": True})
    async def models(self, audio: NamedDependency[AudioService], type: FromQuery[str] = "tts") -> AudioModelList:
        """TTS models by default (Open WebUI fills its TTS model menu from this); ``?type=asr``."""
        if type not in ("tts", "asr"):
            raise InvalidRequest("type must be 'tts' or 'asr'.", param="type")
        return AudioModelList([AudioModelOut(id=name, type=type) for name in audio.models(ModelType(type))])
