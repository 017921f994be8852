"""OpenAI Realtime (beta, ``realtime=v1``) server events: what ``/v1/realtime`` sends.

Every event has a fresh ``event_id`` and its ``type`` tag. A response's events name its
``response_id`` (and the item and part they belong to), so a client can drop everything of a
response it has cancelled.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from llmux.protocol.realtime import Item, Session, new_id


class ServerEvent(msgspec.Struct, tag_field="type", kw_only=True):
    event_id: str = msgspec.field(default_factory=lambda: new_id("event"))


class ErrorDetail(msgspec.Struct, kw_only=True):
    type: str
    code: str | None
    message: str
    param: str | None = None
    event_id: str | None = None
    """The client event that caused it."""


class Error(ServerEvent, tag="error"):
    error: ErrorDetail


class SessionCreated(ServerEvent, tag="session.created"):
    session: Session


class SessionUpdated(ServerEvent, tag="session.updated"):
    session: Session


# ---- input audio --------------------------------------------------------------------------


class SpeechStarted(ServerEvent, tag="input_audio_buffer.speech_started"):
    audio_start_ms: int
    item_id: str


class SpeechStopped(ServerEvent, tag="input_audio_buffer.speech_stopped"):
    audio_end_ms: int
    item_id: str


class AudioCommitted(ServerEvent, tag="input_audio_buffer.committed"):
    item_id: str
    previous_item_id: str | None = None


class AudioCleared(ServerEvent, tag="input_audio_buffer.cleared"):
    pass


# ---- conversation -------------------------------------------------------------------------


class ItemCreated(ServerEvent, tag="conversation.item.created"):
    item: Item
    previous_item_id: str | None = None


class ItemRetrieved(ServerEvent, tag="conversation.item.retrieved"):
    item: Item


class ItemDeleted(ServerEvent, tag="conversation.item.deleted"):
    item_id: str


class ItemTruncated(ServerEvent, tag="conversation.item.truncated"):
    item_id: str
    content_index: int
    audio_end_ms: int


class TranscriptionUsage(msgspec.Struct, kw_only=True):
    seconds: float
    """Of the audio transcribed."""
    type: Literal["duration"] = "duration"


class TranscriptionCompleted(ServerEvent, tag="conversation.item.input_audio_transcription.completed"):
    item_id: str
    content_index: int
    transcript: str
    usage: TranscriptionUsage


class TranscriptionFailed(ServerEvent, tag="conversation.item.input_audio_transcription.failed"):
    item_id: str
    content_index: int
    error: ErrorDetail


# ---- responses ----------------------------------------------------------------------------


class Usage(msgspec.Struct, kw_only=True):
    total_tokens: int
    input_tokens: int
    output_tokens: int
    input_token_details: dict[str, int] = {}
    output_token_details: dict[str, int] = {}


ResponseStatus = Literal["in_progress", "completed", "cancelled", "failed", "incomplete"]


class Response(msgspec.Struct, kw_only=True):
    id: str
    object: str = "realtime.response"
    status: ResponseStatus = "in_progress"
    status_details: dict[str, Any] | None = None
    output: list[Item] = []
    usage: Usage | None = None
    modalities: list[str] = []


class ResponseCreated(ServerEvent, tag="response.created"):
    response: Response


class ResponseDone(ServerEvent, tag="response.done"):
    response: Response


class OutputItemAdded(ServerEvent, tag="response.output_item.added"):
    response_id: str
    output_index: int
    item: Item


class OutputItemDone(ServerEvent, tag="response.output_item.done"):
    response_id: str
    output_index: int
    item: Item


class Part(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: Literal["text", "audio"]
    text: str | None = None
    transcript: str | None = None


class _InPart(ServerEvent):
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


class PartAdded(_InPart, kw_only=True, tag="response.content_part.added"):
    part: Part


class PartDone(_InPart, kw_only=True, tag="response.content_part.done"):
    part: Part


class TextDelta(_InPart, kw_only=True, tag="response.text.delta"):
    delta: str


class TextDone(_InPart, kw_only=True, tag="response.text.done"):
    text: str


class AudioTranscriptDelta(_InPart, kw_only=True, tag="response.audio_transcript.delta"):
    delta: str


class AudioTranscriptDone(_InPart, kw_only=True, tag="response.audio_transcript.done"):
    transcript: str


class AudioDelta(_InPart, kw_only=True, tag="response.audio.delta"):
    delta: str
    """Base64 pcm16 at 24 kHz."""


class AudioDone(_InPart, kw_only=True, tag="response.audio.done"):
    pass


class ArgumentsDelta(ServerEvent, tag="response.function_call_arguments.delta"):
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


class ArgumentsDone(ServerEvent, tag="response.function_call_arguments.done"):
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str
