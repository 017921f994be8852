"""OpenAI Realtime (beta, ``realtime=v1``) wire shapes: the session, items, and client events.

The subset a voice client needs (``/v1/realtime``). Lenient like the other request shapes:
unknown fields are ignored; the fields llmux acts on are typed, so a bad value is an ``error``
event naming its ``param``. Server events are in ``protocol.realtime_events``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

PCM_RATE = 24_000
"""``pcm16`` is 16-bit little-endian mono at 24 kHz, in and out."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


# ---- session ------------------------------------------------------------------------------


class TurnDetection(msgspec.Struct, kw_only=True):
    type: Literal["server_vad"] = "server_vad"
    threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    prefix_padding_ms: Annotated[int, msgspec.Meta(ge=0, le=5_000)] = 300
    silence_duration_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 500
    create_response: bool = True
    interrupt_response: bool = True
    """Speech while a response runs cancels it (barge-in)."""


class InputTranscription(msgspec.Struct, kw_only=True):
    model: str | None = None
    """An ASR model name (``whisper-1`` is an alias); None: the first one configured."""
    language: str | None = None
    prompt: str | None = None


class SessionTool(msgspec.Struct, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    type: Literal["function"] = "function"
    description: str | None = None
    parameters: dict[str, Any] | None = None


Modality = Literal["text", "audio"]
AudioFormat = Literal["pcm16"]
MaxTokens = Annotated[int, msgspec.Meta(ge=1)] | Literal["inf"]


class SessionUpdate(msgspec.Struct, kw_only=True):
    """What ``session.update`` may set; fields left out keep their value."""

    model: str | UnsetType = UNSET
    modalities: list[Modality] | UnsetType = UNSET
    instructions: str | UnsetType = UNSET
    voice: str | UnsetType = UNSET
    speech_model: str | UnsetType = UNSET
    """Not OpenAI's: the TTS model to speak with (default: the first one configured)."""
    input_audio_format: AudioFormat | UnsetType = UNSET
    output_audio_format: AudioFormat | UnsetType = UNSET
    input_audio_transcription: InputTranscription | UnsetType | None = UNSET
    turn_detection: TurnDetection | UnsetType | None = UNSET
    tools: list[SessionTool] | UnsetType = UNSET
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | UnsetType = UNSET
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | UnsetType = UNSET
    max_response_output_tokens: MaxTokens | UnsetType = UNSET
    input_audio_noise_reduction: UnsetType | None = UNSET
    """Accepted only as null: llmux does no noise reduction."""


class Session(msgspec.Struct, kw_only=True):
    """The session as the server reports it (``session.created`` / ``session.updated``)."""

    id: str
    model: str
    object: str = "realtime.session"
    modalities: list[Modality] = msgspec.field(default_factory=lambda: ["text", "audio"])
    instructions: str = ""
    voice: str = "alloy"
    speech_model: str = ""
    input_audio_format: AudioFormat = "pcm16"
    output_audio_format: AudioFormat = "pcm16"
    input_audio_transcription: InputTranscription | None = msgspec.field(default_factory=InputTranscription)
    turn_detection: TurnDetection | None = msgspec.field(default_factory=TurnDetection)
    tools: list[SessionTool] = []
    tool_choice: str | dict[str, Any] = "auto"
    temperature: float | None = None
    max_response_output_tokens: int | Literal["inf"] = "inf"
    input_audio_noise_reduction: None = None


# ---- conversation items -------------------------------------------------------------------


class ContentPart(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: Literal["input_text", "input_audio", "text", "audio"]
    text: str | None = None
    audio: str | None = None
    """Base64 pcm16 (an ``input_audio`` part sent by the client): transcribed on arrival."""
    transcript: str | None = None


class Item(msgspec.Struct, kw_only=True):
    id: str = msgspec.field(default_factory=lambda: new_id("item"))
    type: Literal["message", "function_call", "function_call_output"] = "message"
    object: str = "realtime.item"
    status: Literal["completed", "in_progress", "incomplete"] = "completed"
    role: Literal["user", "assistant", "system"] | None = None
    content: list[ContentPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


# ---- client events ------------------------------------------------------------------------


class ClientEvent(msgspec.Struct, tag_field="type", kw_only=True):
    event_id: str | None = None


class SessionUpdateEvent(ClientEvent, tag="session.update"):
    session: SessionUpdate


class AudioAppend(ClientEvent, tag="input_audio_buffer.append"):
    audio: str
    """Base64 pcm16 at 24 kHz."""


class AudioCommit(ClientEvent, tag="input_audio_buffer.commit"):
    pass


class AudioClear(ClientEvent, tag="input_audio_buffer.clear"):
    pass


class ItemCreate(ClientEvent, tag="conversation.item.create"):
    item: Item
    previous_item_id: str | None = None


class ItemDelete(ClientEvent, tag="conversation.item.delete"):
    item_id: str


class ItemRetrieve(ClientEvent, tag="conversation.item.retrieve"):
    """Answered with ``conversation.item.retrieved``: the item as the server holds it."""

    item_id: str


class ItemTruncate(ClientEvent, tag="conversation.item.truncate"):
    """Sent after a barge-in: how much of an answer's audio the user heard."""

    item_id: str
    content_index: int = 0
    audio_end_ms: Annotated[int, msgspec.Meta(ge=0)] = 0


class ResponseOptions(msgspec.Struct, kw_only=True):
    modalities: list[Modality] | None = None
    instructions: str | None = None
    voice: str | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    max_response_output_tokens: MaxTokens | None = None
    tools: list[SessionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    conversation: Literal["auto", "none"] = "auto"


class ResponseCreate(ClientEvent, tag="response.create"):
    response: ResponseOptions = msgspec.field(default_factory=ResponseOptions)


class ResponseCancel(ClientEvent, tag="response.cancel"):
    response_id: str | None = None


class OutputAudioClear(ClientEvent, tag="output_audio_buffer.clear"):
    """WebRTC/SIP only (the server plays the audio there): refused on a WebSocket, whose client
    plays the audio itself and cuts it off with ``response.cancel``."""


AnyClientEvent = (
    SessionUpdateEvent
    | AudioAppend
    | AudioCommit
    | AudioClear
    | ItemCreate
    | ItemDelete
    | ItemRetrieve
    | ItemTruncate
    | ResponseCreate
    | ResponseCancel
    | OutputAudioClear
)
