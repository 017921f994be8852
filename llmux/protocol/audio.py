"""OpenAI wire shapes of the audio endpoints (and the two lists Open WebUI reads)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

TranscriptFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class TranscriptionForm(msgspec.Struct, kw_only=True):
    """The non-file fields of a transcription upload (multipart strings, converted)."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    language: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]+)?$")] | None = None
    prompt: str | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    response_format: TranscriptFormat = "json"
    timestamp_granularities: list[Literal["segment", "word"]] = []
    stream: bool = False
    """Answer server-sent ``transcript.text.delta`` events as segments are recognised."""


class SpeechRequest(msgspec.Struct, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    voice: str | None = None
    response_format: SpeechFormat = "mp3"
    """Open WebUI sends none and names what it gets ``.mp3``."""
    speed: Annotated[float, msgspec.Meta(ge=0.25, le=4.0)] = 1.0
    stream_format: Literal["audio", "sse"] | None = None
    stream: bool = False
    """Send audio as it is synthesised (chunked), as ``stream_format: "audio"`` does."""
    language: str | None = None
    """Chatterbox-Multilingual: the language to speak; defaults to the model's."""
    instructions: str | None = None
    """Accepted and ignored (no model here takes style instructions)."""


class DurationUsage(msgspec.Struct):
    seconds: float
    type: str = "duration"


class TranscriptionJson(msgspec.Struct):
    text: str
    usage: DurationUsage


class WordOut(msgspec.Struct):
    word: str
    start: float
    end: float


class SegmentOut(msgspec.Struct):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptionVerbose(msgspec.Struct, omit_defaults=True):
    language: str
    duration: float
    text: str
    segments: list[SegmentOut] | None = None
    words: list[WordOut] | None = None
    usage: DurationUsage | None = None
    task: str = "transcribe"


class VoiceOut(msgspec.Struct):
    id: str
    name: str


class VoiceList(msgspec.Struct):
    voices: list[VoiceOut]


class AudioModelOut(msgspec.Struct):
    id: str
    type: str
    object: str = "model"
    owned_by: str = "llmux"


class AudioModelList(msgspec.Struct):
    models: list[AudioModelOut]


# ---- streamed transcription and speech (server-sent events) -----------------------------------


class TranscriptTextDelta(msgspec.Struct, tag_field="type", tag="transcript.text.delta"):
    delta: str


class TranscriptTextDone(msgspec.Struct, tag_field="type", tag="transcript.text.done"):
    text: str


class SpeechAudioDelta(msgspec.Struct, tag_field="type", tag="speech.audio.delta"):
    audio: str
    """Base64 of the next piece of the encoded audio (in the request's ``response_format``)."""


class SpeechAudioDone(msgspec.Struct, tag_field="type", tag="speech.audio.done"):
    pass
