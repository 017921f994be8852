"""What the services need from a runtime, and the values that cross that seam.

An engine wraps one physical model. ``load``/``unload`` (the ``Loadable`` the residency
controller drives) are blocking and run in a worker thread, one at a time. Text engines take
many jobs at once through ``submit`` (``engines.text``); speech engines are blocking calls the
services run through the worker bridge (``engines.worker``), checking ``cancel`` between steps
so a client that goes away stops the work within a token or a chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import msgspec

from llmux.residency.slots import Loadable

Engine = Loadable


# ---- text ---------------------------------------------------------------------------------


class SamplingParams(msgspec.Struct, frozen=True, kw_only=True):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    top_k: int | None = None
    """0 turns it off; None leaves the runtime's default."""
    min_p: float | None = None
    presence_penalty: float | None = None
    """OpenAI's: subtracted once from the logit of every token already generated."""
    frequency_penalty: float | None = None
    """OpenAI's: subtracted once per earlier occurrence of the token in the answer."""
    repetition_penalty: float | None = None
    """CTRL's multiplicative penalty (transformers, llama.cpp ``repeat_penalty``); 1 is off."""
    logprobs: int | None = None
    """Report each token's log probability and this many alternatives (None: none at all)."""
    json_schema: str | None = None
    """Constrain decoding to JSON matching this schema (JSON text); ``{"type": "object"}`` for
    OpenAI's ``json_object``."""


class ChatTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """How a loaded text model wants its prompt: the chat pipeline renders it, once for every
    runtime."""

    source: str
    """The Jinja chat template (from the checkpoint or the GGUF, or ``options.chat_template``)."""
    variables: dict[str, str] = {}
    """Extra template variables the runtime defines (``bos_token``, ``eos_token``)."""
    image_part: dict[str, Any] | None = None
    """What an image becomes in a templated message (transformers processors expand
    ``{"type": "image"}``, llama.cpp's multimodal tokenizer looks for its marker in the text);
    None when the loaded model takes no images."""


class TextJob(msgspec.Struct, frozen=True, kw_only=True):
    """One generation: the prompt exactly as the model sees it, the images it refers to (in
    order, decoded and checked before the lease), and sampling."""

    prompt: str
    images: tuple[bytes, ...] = ()
    params: SamplingParams = SamplingParams()


class TokenLogprob(msgspec.Struct, frozen=True):
    """One generated token's log probability, and the most likely alternatives at its step."""

    token: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


class LoggedPiece(msgspec.Struct, frozen=True):
    """A token's text piece with its log probability (when the job asked for ``logprobs``)."""

    text: str
    logprob: TokenLogprob


class Prompted(msgspec.Struct, frozen=True):
    """The first item of every generation: the prompt is evaluated, this many tokens may follow."""

    prompt_tokens: int
    max_tokens: int
    cached_tokens: int = 0
    """Of ``prompt_tokens``, those reused from the runtime's cache instead of evaluated."""


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
class SpeechToText(Engine, Protocol):
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
class TextToSpeech(Engine, Protocol):
    sample_rate: int

    def voices(self) -> list[Voice]:
        """The voices a request may name. Works before ``load`` (listing never loads a model)."""
        ...

    def languages(self) -> tuple[str, ...]:
        """The languages it speaks (ISO 639-1) when it speaks several, else ``()``: a request
        that names none then gets the one its text is in. Works before ``load``."""
        ...

    def speak(self, text: str, voice: str, options: SpeakOptions, cancel: threading.Event) -> Iterator[Any]:
        """Yield mono float32 arrays at ``sample_rate``, one per piece of text, as each is ready.

        ``voice`` is an id from ``voices()`` (the API checks it); ``text`` is already split at
        sentence boundaries by the caller, but may still hold several sentences."""
        ...


# ---- embeddings ---------------------------------------------------------------------------


@runtime_checkable
class TextEmbedder(Engine, Protocol):
    """An embedding model. ``dimensions`` and ``context`` are known once loaded."""

    dimensions: int
    """Length of the vectors ``embed`` returns."""
    context: int
    """Tokens one input may take (the model's limit, or the configured cap)."""

    def embed(self, texts: list[str], cancel: threading.Event) -> tuple[Any, int]:
        """A float32 array ``(len(texts), dimensions)``, pooled (L2-normalised when the
        backend's ``normalize`` option is on), and the tokens the inputs took. An input longer
        than ``context`` raises a 400 naming ``input`` before anything is computed. May be
        called from several threads at once; checks ``cancel`` between batches."""
        ...
