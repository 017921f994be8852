"""OpenAI Realtime GA wire shapes (a connection without ``OpenAI-Beta: realtime=v1``).

Only what differs from beta (``protocol.realtime``): the session (``type: "realtime"``, audio
settings under ``audio.input`` / ``audio.output``, ``output_modalities``, ``max_output_tokens``),
message content types (``output_text``, ``output_audio``) and ``response.create`` options. The
events that did not change (``input_audio_buffer.*``, ``conversation.item.delete`` /
``retrieve`` / ``truncate``, ``response.cancel``) are beta's own Structs, and so is a function tool (``SessionTool``: ``mcp`` tools are refused
by its ``type``). Shapes follow ``openai.types.realtime``.

What llmux cannot honour is refused by its type (a ``Literal``, or ``None`` only), so the
``error`` event names the param; unknown fields are ignored, as everywhere. The fields only beta
has are refused by name (``BETA_ONLY``): a beta client that forgot its header learns why.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from llmux.protocol.realtime import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    ClientEvent,
    InputTranscription,
    ItemDelete,
    ItemRetrieve,
    ItemTruncate,
    MaxTokens,
    Modality,
    OutputAudioClear,
    ResponseCancel,
    SessionTool,
)

# ---- client side: what a GA client sends ---------------------------------------------------


class PcmFormat(msgspec.Struct, kw_only=True):
    """``audio/pcm`` at 24 kHz only (``audio/pcmu`` and ``audio/pcma`` are refused)."""

    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = 24000


class TurnDetectionIn(msgspec.Struct, kw_only=True):
    type: Literal["server_vad"]
    """``semantic_vad`` is refused: llmux detects turns by silence (Silero VAD)."""
    threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    prefix_padding_ms: Annotated[int, msgspec.Meta(ge=0, le=5_000)] | None = None
    silence_duration_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: None = None


class AudioInputIn(msgspec.Struct, kw_only=True):
    format: PcmFormat | UnsetType = UNSET
    transcription: InputTranscription | UnsetType | None = UNSET
    turn_detection: TurnDetectionIn | UnsetType | None = UNSET
    noise_reduction: UnsetType | None = UNSET
    """Accepted only as null: llmux does no noise reduction."""


class AudioOutputIn(msgspec.Struct, kw_only=True):
    format: PcmFormat | UnsetType = UNSET
    voice: str | UnsetType = UNSET
    speed: Annotated[float, msgspec.Meta(ge=1, le=1)] | UnsetType | None = UNSET
    """Only 1.0: llmux does not change the speaking rate."""


class AudioIn(msgspec.Struct, kw_only=True):
    input: AudioInputIn | UnsetType = UNSET
    output: AudioOutputIn | UnsetType = UNSET


class FunctionChoice(msgspec.Struct, kw_only=True):
    type: Literal["function"]
    name: str


ToolChoice = Literal["none", "auto", "required"] | FunctionChoice

BETA_ONLY = {
    "modalities": "output_modalities",
    "voice": "audio.output.voice",
    "input_audio_format": "audio.input.format",
    "output_audio_format": "audio.output.format",
    "input_audio_transcription": "audio.input.transcription",
    "turn_detection": "audio.input.turn_detection",
    "input_audio_noise_reduction": "audio.input.noise_reduction",
    "max_response_output_tokens": "max_output_tokens",
}
"""Beta session fields and where GA has them."""


class SessionUpdateIn(msgspec.Struct, kw_only=True):
    """``session.update``'s session (``type: "realtime"``); fields left out keep their value."""

    type: Literal["realtime"] = "realtime"
    """``transcription`` sessions are refused."""
    model: str | UnsetType = UNSET
    instructions: str | UnsetType = UNSET
    output_modalities: list[Modality] | UnsetType = UNSET
    audio: AudioIn | UnsetType = UNSET
    tools: list[SessionTool] | UnsetType = UNSET
    tool_choice: ToolChoice | UnsetType = UNSET
    max_output_tokens: MaxTokens | UnsetType = UNSET
    speech_model: str | UnsetType = UNSET
    """Not OpenAI's: the TTS model to speak with (default: the first one configured)."""
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | UnsetType = UNSET
    """Not in GA's session; kept from beta."""
    truncation: Literal["auto", "disabled"] | UnsetType = UNSET
    parallel_tool_calls: bool | UnsetType = UNSET
    include: Annotated[list[str], msgspec.Meta(max_length=0)] | UnsetType | None = UNSET
    prompt: UnsetType | None = UNSET
    reasoning: UnsetType | None = UNSET
    tracing: UnsetType | None = UNSET
    modalities: Any = UNSET
    voice: Any = UNSET
    input_audio_format: Any = UNSET
    output_audio_format: Any = UNSET
    input_audio_transcription: Any = UNSET
    turn_detection: Any = UNSET
    input_audio_noise_reduction: Any = UNSET
    max_response_output_tokens: Any = UNSET


class SessionUpdateEventIn(ClientEvent, tag="session.update"):
    session: SessionUpdateIn


class ContentIn(msgspec.Struct, kw_only=True):
    type: Literal["input_text", "input_audio", "output_text", "output_audio"]
    """``input_image`` is refused: the chat turn is text."""
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None


class ItemIn(msgspec.Struct, kw_only=True):
    id: str | None = None
    type: Literal["message", "function_call", "function_call_output"] = "message"
    status: Literal["completed", "in_progress", "incomplete"] = "completed"
    role: Literal["user", "assistant", "system"] | None = None
    content: list[ContentIn] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


class ItemCreateIn(ClientEvent, tag="conversation.item.create"):
    item: ItemIn
    previous_item_id: str | None = None


class ResponseAudioOutputIn(msgspec.Struct, kw_only=True):
    format: PcmFormat | None = None
    voice: str | None = None


class ResponseAudioIn(msgspec.Struct, kw_only=True):
    output: ResponseAudioOutputIn | None = None


class ResponseOptionsIn(msgspec.Struct, kw_only=True):
    output_modalities: list[Modality] | None = None
    instructions: str | None = None
    audio: ResponseAudioIn | None = None
    max_output_tokens: MaxTokens | None = None
    tools: list[SessionTool] | None = None
    tool_choice: ToolChoice | None = None
    conversation: Literal["auto", "none"] = "auto"
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    input: None = None
    """Refused: a response is written from the conversation."""
    prompt: None = None
    reasoning: None = None


class ResponseCreateIn(ClientEvent, tag="response.create"):
    response: ResponseOptionsIn = msgspec.field(default_factory=ResponseOptionsIn)


AnyClientEventIn = (
    SessionUpdateEventIn
    | AudioAppend
    | AudioCommit
    | AudioClear
    | ItemCreateIn
    | ItemDelete
    | ItemRetrieve
    | ItemTruncate
    | ResponseCreateIn
    | ResponseCancel
    | OutputAudioClear
)
