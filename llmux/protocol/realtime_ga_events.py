"""OpenAI Realtime GA server events whose shape differs from beta's (``protocol.realtime_events``):
the session, items (``output_text`` / ``output_audio`` content) and responses
(``output_modalities``), ``conversation.item.added`` / ``.done``, and the renamed deltas.
Shapes follow ``openai.types.realtime``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from llmux.protocol.realtime import PCM_RATE, InputTranscription, Modality, SessionTool, TurnDetection
from llmux.protocol.realtime_events import ServerEvent, Usage

# ---- server side: what a GA client is sent -------------------------------------------------


class PcmFormatOut(msgspec.Struct, kw_only=True):
    type: str = "audio/pcm"
    rate: int = PCM_RATE


class AudioInputOut(msgspec.Struct, kw_only=True):
    format: PcmFormatOut
    transcription: InputTranscription | None
    turn_detection: TurnDetection | None
    noise_reduction: None = None


class AudioOutputOut(msgspec.Struct, kw_only=True):
    format: PcmFormatOut
    voice: str
    speed: float = 1.0


class AudioOut(msgspec.Struct, kw_only=True):
    input: AudioInputOut
    output: AudioOutputOut


class SessionOut(msgspec.Struct, kw_only=True):
    """The session as ``session.created`` / ``session.updated`` report it."""

    type: str = "realtime"
    object: str = "realtime.session"
    id: str
    model: str
    output_modalities: list[Modality]
    instructions: str
    audio: AudioOut
    tools: list[SessionTool]
    tool_choice: str | dict[str, Any]
    max_output_tokens: int | Literal["inf"]
    speech_model: str
    temperature: float | None = None


class ContentOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None


class ItemOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    type: str
    object: str
    status: str
    role: str | None = None
    content: list[ContentOut] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


class ResponseOut(msgspec.Struct, kw_only=True):
    id: str
    object: str = "realtime.response"
    status: str
    status_details: dict[str, Any] | None
    output: list[ItemOut]
    usage: Usage | None
    output_modalities: list[str]


class SessionCreatedOut(ServerEvent, tag="session.created"):
    session: SessionOut


class SessionUpdatedOut(ServerEvent, tag="session.updated"):
    session: SessionOut


class ItemAddedOut(ServerEvent, tag="conversation.item.added"):
    item: ItemOut
    previous_item_id: str | None = None


class ItemDoneOut(ServerEvent, tag="conversation.item.done"):
    item: ItemOut
    previous_item_id: str | None = None


class ItemRetrievedOut(ServerEvent, tag="conversation.item.retrieved"):
    item: ItemOut


class OutputItemAddedOut(ServerEvent, tag="response.output_item.added"):
    response_id: str
    output_index: int
    item: ItemOut


class OutputItemDoneOut(ServerEvent, tag="response.output_item.done"):
    response_id: str
    output_index: int
    item: ItemOut


class ResponseCreatedOut(ServerEvent, tag="response.created"):
    response: ResponseOut


class ResponseDoneOut(ServerEvent, tag="response.done"):
    response: ResponseOut


RENAMED = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
}
"""Beta server events whose shape GA kept under a new name."""
