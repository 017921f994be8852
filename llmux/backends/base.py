"""What the residency controller and the API need from a runtime.

A backend wraps one physical model. ``load``/``unload`` are blocking and run in a worker
thread, one at a time (the controller guarantees it). Inference methods are blocking too and
run in worker threads; they check ``cancel`` between steps so a client that goes away stops
the work within a token or a chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from llmux.registry.config import Behaviour


class Backend(Protocol):
    def load(self) -> float | None:
        """Bring the weights into memory. Returns the measured footprint in GB, or None when
        it cannot be measured (CPU); raises on failure, leaving nothing allocated."""
        ...

    def unload(self) -> None:
        """Free everything ``load`` allocated."""
        ...


# ---- chat ---------------------------------------------------------------------------------


class SamplingParams(msgspec.Struct, frozen=True, kw_only=True):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


class ChatJob(msgspec.Struct, frozen=True, kw_only=True):
    """A chat request as a backend sees it: OpenAI messages and tools as plain data."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    params: SamplingParams = SamplingParams()
    behaviour: Behaviour = Behaviour()


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ContentDelta(msgspec.Struct, frozen=True, tag="content"):
    text: str


class ReasoningDelta(msgspec.Struct, frozen=True, tag="reasoning"):
    text: str


class ToolCallStart(msgspec.Struct, frozen=True, tag="tool_call"):
    """A new tool call; its arguments follow as ``ToolCallArgs`` with the same index."""

    index: int
    id: str
    name: str


class ToolCallArgs(msgspec.Struct, frozen=True, tag="tool_args"):
    index: int
    text: str


FinishReason = Literal["stop", "length", "tool_calls"]


class Finish(msgspec.Struct, frozen=True, tag="finish"):
    reason: FinishReason
    usage: Usage


ChatEvent = ContentDelta | ReasoningDelta | ToolCallStart | ToolCallArgs | Finish
"""What a chat backend yields: deltas in order, then exactly one ``Finish``."""


@runtime_checkable
class ChatBackend(Backend, Protocol):
    def chat(self, job: ChatJob, cancel: threading.Event) -> Iterator[ChatEvent]:
        """Generate, yielding events as they are produced; stop soon after ``cancel`` is set."""
        ...


# ---- speech to text (ASR) -----------------------------------------------------------------
# Audio crosses this boundary as numpy float32 arrays. numpy is not imported here (the core
# installs without it): arrays are typed ``Any``.

ASR_SAMPLE_RATE = 16_000
"""What ``SpeechToText.transcribe`` receives: mono float32 at this rate."""


class TranscribeOptions(msgspec.Struct, frozen=True, kw_only=True):
    language: str = "en"
    prompt: str | None = None
    """Text that conditions the decoder (names, spelling); backends without prompting ignore it."""
    temperature: float = 0.0
    word_timestamps: bool = False


class Word(msgspec.Struct, frozen=True):
    start: float
    end: float
    word: str


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


class Transcript(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    language: str
    duration: float
    """Seconds of audio transcribed."""
    segments: tuple[Segment, ...] = ()


@runtime_checkable
class SpeechToText(Backend, Protocol):
    def transcribe(self, audio: Any, options: TranscribeOptions, cancel: threading.Event) -> Transcript:
        """Transcribe mono float32 audio at ``ASR_SAMPLE_RATE``; may be called from several
        threads at once (concurrent requests share one loaded model)."""
        ...


# ---- text to speech (TTS) -----------------------------------------------------------------


class Voice(msgspec.Struct, frozen=True):
    id: str
    name: str


class SpeakOptions(msgspec.Struct, frozen=True, kw_only=True):
    speed: float = 1.0
    language: str | None = None
    """For multilingual models; None means the model's default."""


@runtime_checkable
class TextToSpeech(Backend, Protocol):
    sample_rate: int

    def voices(self) -> list[Voice]:
        """The voices a request may name. Works before ``load`` (listing never loads a model)."""
        ...

    def speak(self, text: str, voice: str, options: SpeakOptions, cancel: threading.Event) -> Iterator[Any]:
        """Yield mono float32 arrays at ``sample_rate``, one per piece of text, as each is ready.

        ``voice`` is an id from ``voices()`` (the API checks it); ``text`` is already split at
        sentence boundaries by the caller, but may still hold several sentences."""
        ...
