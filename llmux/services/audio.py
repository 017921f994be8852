"""Transcription and speech: resolve the model, decode, lease, run in a worker thread, encode.

Policy that routes must not hold lives here: audio is decoded (and rejected) before a lease is
taken, so a bad upload never loads or swaps a model; a voice is chosen only from the listed
names; voice and model lists never load a model. Blocking work goes through the one worker
bridge (``engines.worker``); what a request did goes into its canonical line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from llmux.engines.base import (
    ASR_SAMPLE_RATE,
    Segment,
    SpeakOptions,
    StreamingSpeechToText,
    TranscribeOptions,
    Transcript,
    Voice,
)
from llmux.engines.factory import create_engine
from llmux.engines.worker import ThreadStream, run_in_thread
from llmux.protocol.audio import SpeechRequest
from llmux.protocol.errors import InvalidRequest, PayloadTooLarge
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.residency.controller import ResidencyController
from llmux.services.access import admit
from llmux.services.record import note

MB = 1024 * 1024
OPENAI_VOICES = frozenset(
    ["alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin", "cedar"]
)
"""OpenAI's own voice names. Clients send them by default (Open WebUI: ``alloy``); they mean
"the model's default voice" here unless a voice of that name is configured."""


@dataclass(frozen=True, slots=True)
class TranscriptionJob:
    physical: str
    audio: Any
    """Decoded: mono float32 at ``ASR_SAMPLE_RATE``."""
    options: TranscribeOptions


@dataclass(frozen=True, slots=True)
class SpeechJob:
    model: str
    physical: str
    text: str
    voice: str
    format: str
    options: SpeakOptions
    stream: bool = False
    """Streamed output cannot seek back to finish headers (mp3 length, wav sizes)."""


class AudioService:
    def __init__(self, registry: Registry, controller: ResidencyController) -> None:
        self.registry = registry
        self.controller = controller

    # ---- lists (never load a model) ---------------------------------------------------------

    def models(self, kind: ModelType) -> list[str]:
        return [name for name, v in self.registry.virtual.items() if self.registry.physical[v.physical].type is kind]

    def voices_of(self, physical: PhysicalModel) -> list[Voice]:
        if physical.remote:
            return []  # the upstream's voices are its own (a request's voice is passed through)
        engine: Any = create_engine(physical, self.registry)  # constructed, not loaded
        voices: list[Voice] = engine.voices()
        return voices

    def voices(self, model: str | None) -> list[Voice]:
        """Voices of one TTS model, or of all of them (deduplicated, in config order)."""
        if model is not None:
            return self.voices_of(self.registry.resolve(model, expect=ModelType.TTS)[1])
        seen: dict[str, Voice] = {}
        for spec in self.registry.physical.values():
            if spec.type is ModelType.TTS:
                for voice in self.voices_of(spec):
                    seen.setdefault(voice.id, voice)
        return list(seen.values())

    # ---- transcription ----------------------------------------------------------------------

    def check_size(self, size: int) -> None:
        limit = self.registry.limits.max_audio_mb
        if size > limit * MB:
            raise PayloadTooLarge(
                f"The audio file is {size / MB:.1f} MB; this server accepts up to {limit:g} MB.", param="file"
            )

    async def prepare_transcription(
        self, model: str, data: bytes, options: TranscribeOptions, language: str | None
    ) -> TranscriptionJob:
        """Resolve and decode before any lease. ``language`` as the client sent it (None: the
        virtual model's default, else en)."""
        from llmux.audio.decode import decode_audio

        self.check_size(len(data))
        admit(model)  # the key's models and limits: 404/429
        virtual, physical = self.registry.resolve(model, expect=ModelType.ASR)
        lang = (language or virtual.behaviour.language or "en").lower().replace("_", "-").split("-")[0]
        opts = msgspec.structs.replace(options, language=lang)
        note(model=model, physical=physical.id, language=opts.language)
        audio = await run_in_thread(
            lambda _: decode_audio(data, ASR_SAMPLE_RATE, self.registry.limits.max_audio_s), name="decode-audio"
        )
        note(audio_s=round(audio.size / ASR_SAMPLE_RATE, 3))
        return TranscriptionJob(physical.id, audio, opts)

    async def transcribe(self, model: str, data: bytes, options: TranscribeOptions, language: str | None) -> Transcript:
        return await self.transcribe_job(await self.prepare_transcription(model, data, options, language))

    async def transcribe_job(self, job: TranscriptionJob) -> Transcript:
        started = time.perf_counter()
        async with self.controller.lease(job.physical) as lease:
            leased = time.perf_counter()
            transcript: Transcript = await run_in_thread(
                lambda cancel: lease.engine.transcribe(job.audio, job.options, cancel),
                name=f"transcribe-{job.physical}",
            )
        note(
            waited_s=round(leased - started, 3),
            inference_s=round(time.perf_counter() - leased, 3),
            chars=len(transcript.text),
        )
        return transcript

    async def start_transcription(self, job: TranscriptionJob) -> AsyncGenerator[Segment | Transcript, None]:
        """Segments as they are recognised, then the whole transcript, with the model already
        leased: a load failure is raised here, before any response header is sent. A backend
        that cannot stream yields only the transcript."""
        pieces = self._transcription(job)
        await anext(pieces)
        return pieces

    async def _transcription(self, job: TranscriptionJob) -> AsyncGenerator[Any, None]:
        lease = await self.controller.acquire(job.physical)
        started = time.perf_counter()
        stream = ThreadStream(lambda cancel: _recognise(lease.engine, job, cancel), name=f"transcribe-{job.physical}")
        chars = 0
        try:
            yield None
            async for batch in stream.batches():
                for item in batch:
                    if isinstance(item, Transcript):
                        chars = len(item.text)
                    yield item
        finally:
            stream.close()
            # The lease goes back when the recognition thread has stopped, not before.
            stream.stopped.add_done_callback(lambda _: self.controller.release(lease))
            note(inference_s=round(time.perf_counter() - started, 3), chars=chars)

    # ---- speech -----------------------------------------------------------------------------

    def prepare_speech(self, request: SpeechRequest) -> SpeechJob:
        admit(request.model)  # the key's models and limits: 404/429
        virtual, physical = self.registry.resolve(request.model, expect=ModelType.TTS)
        if not request.input.strip():
            raise InvalidRequest("The input text is empty.", param="input")
        chosen = self._pick_voice(physical, request.voice or virtual.behaviour.voice)
        language = request.language or virtual.behaviour.language or self._language_of(physical, request.input)
        options = SpeakOptions(speed=request.speed, language=language)
        stream = request.stream or request.stream_format is not None
        note(
            model=request.model,
            physical=physical.id,
            voice=chosen,
            format=request.response_format,
            chars=len(request.input),
        )
        return SpeechJob(request.model, physical.id, request.input, chosen, request.response_format, options, stream)

    def speech_voice(self, model: str, wanted: str | None) -> tuple[str, str, SpeakOptions]:
        """The physical model, voice and options a voice session speaks with: a listed voice,
        else the virtual model's voice (OpenAI names such as ``alloy`` mean it), else the first."""
        virtual, physical = self.registry.resolve(model, expect=ModelType.TTS)
        if wanted is None or (
            wanted.lower() in OPENAI_VOICES and wanted not in [v.id for v in self.voices_of(physical)]
        ):
            wanted = virtual.behaviour.voice
        return physical.id, self._pick_voice(physical, wanted), SpeakOptions(language=virtual.behaviour.language)

    def _language_of(self, physical: PhysicalModel, text: str) -> str | None:
        """A model that speaks several languages speaks the one ``text`` is in (a request's
        ``language``, or its virtual model's, always wins; None: the model's default)."""
        from llmux.audio.language_id import detect_language

        engine: Any = create_engine(physical, self.registry)  # constructed, not loaded
        speaks: tuple[str, ...] = engine.languages()
        detected = detect_language(text, speaks) if speaks else None
        if detected is not None:
            note(language_detected=detected)
        return detected

    def _pick_voice(self, physical: PhysicalModel, wanted: str | None) -> str:
        """1. a listed voice id is used as is; 2. no voice, or an OpenAI voice name that is not
        configured, means the model's default (first listed); 3. anything else is a 400 naming
        the voices — a request can only pick from the list, never name a file."""
        ids = [v.id for v in self.voices_of(physical)]
        if not ids:
            raise InvalidRequest(
                f"The model {physical.id!r} has no voice: add a reference recording to the voices directory.",
                param="voice",
                code="voice_not_found",
            )
        if wanted in ids:  # 1
            return wanted
        if wanted is None or wanted.lower() in OPENAI_VOICES:  # 2
            return ids[0]
        raise InvalidRequest(  # 3
            f"Unknown voice {wanted!r}. Voices: {', '.join(ids)} (GET /v1/audio/voices).",
            param="voice",
            code="voice_not_found",
        )

    async def speech(self, job: SpeechJob) -> AsyncGenerator[bytes, None]:
        """Started with ``start_speech``: an empty first piece once the lease is held, then the
        encoded audio piece by piece. The lease is released when the generator finishes or is
        closed (a client that goes away closes it)."""
        lease = await self.controller.acquire(job.physical)
        started = time.perf_counter()
        audio_s = 0.0
        # At most a few pieces ahead of the client: a slow reader does not make the server
        # buffer a whole long synthesis.
        produced = ThreadStream(
            lambda cancel: _produce(lease.engine, job, cancel), maxsize=4, name=f"speak-{job.physical}"
        )
        try:
            yield b""
            async for batch in produced.batches():
                for piece, seconds in batch:
                    audio_s += seconds
                    if piece:
                        yield piece
        finally:
            produced.close()
            # The lease goes back when the synthesis thread has stopped, not before.
            produced.stopped.add_done_callback(lambda _: self.controller.release(lease))
            note(audio_s=round(audio_s, 3), inference_s=round(time.perf_counter() - started, 3))

    async def start_speech(self, job: SpeechJob) -> AsyncGenerator[bytes, None]:
        """The audio of ``job``, with the model already leased (and loaded): a load failure is
        raised here, before any response header is sent."""
        pieces = self.speech(job)
        await anext(pieces)
        return pieces


def _recognise(engine: Any, job: TranscriptionJob, cancel: threading.Event) -> Iterator[Segment | Transcript]:
    """Runs in the worker thread: segments as they are decoded where the backend streams."""
    if isinstance(engine, StreamingSpeechToText):
        yield from engine.transcribe_stream(job.audio, job.options, cancel)
    else:
        yield engine.transcribe(job.audio, job.options, cancel)


def _produce(engine: Any, job: SpeechJob, cancel: threading.Event) -> Iterator[tuple[bytes, float]]:
    """Runs in the worker thread: synthesise sentence groups, encode each as it comes."""
    from llmux.audio.encode import AudioEncoder
    from llmux.audio.text import split_sentences

    encoder = AudioEncoder(job.format, engine.sample_rate, seekable=not job.stream)
    for piece in split_sentences(job.text, max_chars=300):
        if cancel.is_set():  # an engine that returns on cancel must not be handed the next group
            return
        for pcm in engine.speak(piece, job.voice, job.options, cancel):
            if cancel.is_set():
                return
            yield encoder.add(pcm), pcm.size / engine.sample_rate
    yield encoder.finish(), 0.0
