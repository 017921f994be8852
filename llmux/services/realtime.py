"""A realtime voice session (``/v1/realtime``): input audio, turn detection, the conversation.

Audio arrives as 24 kHz pcm16 and is kept at 16 kHz for voice activity detection (Silero) and
speech recognition. With ``server_vad`` a turn ends when the speaker falls silent: its audio
(from ``prefix_padding_ms`` before speech began) becomes a user item, is transcribed, and a
response starts (``services.realtime_response``); speech while a response runs cancels it
(barge-in). Without turn detection the client commits and asks for responses itself.

Residency: a session holds no lease while idle. The ASR model is leased for a transcription,
the chat model for the chat turn, the speech model while a response speaks — never across
turns, so an idle session never blocks a swap.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable

import msgspec
import numpy as np
import structlog

from llmux.audio.pcm import Resampler, pcm16_to_float
from llmux.audio.vad import VAD_RATE, SpeechDetector, silero_scorer
from llmux.engines.base import ASR_SAMPLE_RATE
from llmux.engines.worker import run_in_thread
from llmux.protocol.errors import InvalidRequest, LlmuxError
from llmux.protocol.realtime import (
    PCM_RATE,
    AnyClientEvent,
    AudioAppend,
    AudioClear,
    AudioCommit,
    ContentPart,
    Item,
    ItemCreate,
    ItemDelete,
    ItemRetrieve,
    ItemTruncate,
    OutputAudioClear,
    ResponseCancel,
    ResponseCreate,
    Session,
    SessionUpdateEvent,
)
from llmux.protocol.realtime_events import (
    AudioCleared,
    AudioCommitted,
    Error,
    ErrorDetail,
    ItemCreated,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptionCompleted,
    TranscriptionFailed,
    TranscriptionUsage,
)
from llmux.protocol.realtime_wire import BetaWire, Wire
from llmux.services.realtime_config import RealtimeService, chat_request, merge_session, speaks
from llmux.services.realtime_conversation import Conversation, Outbox
from llmux.services.realtime_response import ResponseRun
from llmux.services.record import noted, open_record

log = structlog.get_logger("llmux.realtime")
MIN_COMMIT_S = 0.1


class RealtimeSession:
    def __init__(self, service: RealtimeService, session: Session, wire: Wire | None = None) -> None:
        self.service, self.session = service, session
        self.wire: Wire = wire or BetaWire()
        """How this connection's events are read and written (beta or GA)."""
        self._client = noted("client")
        """The key's name, from the connection's record (the key guard wrote it there)."""
        self.outbox = Outbox()
        self.send: Callable[[ServerEvent], None] = self.outbox.put
        self.conversation = Conversation(self.outbox.put)
        self._buffer = np.zeros(0, np.float32)
        self._buffer_at = 0
        """Sample (16 kHz) of the whole input stream where the buffer begins."""
        self._resample = Resampler(PCM_RATE, VAD_RATE)
        self._detector: SpeechDetector | None = None
        self._speech_item: str | None = None
        self._speech_from = 0
        self._turn: asyncio.Task[None] | None = None
        """Transcribing the last committed audio (a response waits for it)."""
        self.response: ResponseRun | None = None
        self._response_task: asyncio.Task[None] | None = None
        self._configure_vad()

    def start(self) -> None:
        self.send(SessionCreated(session=self.session))

    async def close(self) -> None:
        """The client left: stop what runs (each stops its threads and gives its leases back)."""
        self._cancel_response("client_disconnected")
        tasks = [t for t in (self._turn, self._response_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- client events --------------------------------------------------------------------------

    async def handle(self, raw: str | bytes) -> None:
        event_id = None
        try:
            event = self.wire.decode(raw)
            event_id = event.event_id
            await self._dispatch(event)
        except msgspec.ValidationError as exc:
            self._error(InvalidRequest(f"Invalid client event: {exc}", code="invalid_event"), event_id)
        except msgspec.DecodeError:
            self._error(InvalidRequest("A client event must be a JSON object.", code="invalid_json"), event_id)
        except LlmuxError as exc:
            self._error(exc, event_id)

    async def _dispatch(self, event: AnyClientEvent) -> None:
        if isinstance(event, AudioAppend):
            await self._append(event.audio)
        elif isinstance(event, SessionUpdateEvent):
            self.session = merge_session(self.service, self.session, event.session)
            self._configure_vad()
            self.send(SessionUpdated(session=self.session))
        elif isinstance(event, AudioCommit):
            self._commit_buffer()
        elif isinstance(event, AudioClear):
            self._clear()
        elif isinstance(event, ItemCreate):
            self.conversation.add(event.item, event.previous_item_id)
        elif isinstance(event, ItemDelete):
            self.conversation.delete(event.item_id)
        elif isinstance(event, ItemRetrieve):
            self.conversation.retrieve(event.item_id)
        elif isinstance(event, ItemTruncate):
            self.conversation.truncate(event)
        elif isinstance(event, ResponseCreate):
            self._create_response(event)
        elif isinstance(event, ResponseCancel):
            if self._response_task is None or self._response_task.done():
                raise InvalidRequest("There is no response to cancel.", code="response_cancel_not_active")
            self._cancel_response("client_cancelled")
        elif isinstance(event, OutputAudioClear):
            raise InvalidRequest(
                "output_audio_buffer.clear is WebRTC/SIP only: over a WebSocket the client plays the audio, so it"
                " stops playing it itself (and sends response.cancel, then conversation.item.truncate).",
                param="type",
                code="unsupported_event",
            )

    def _error(self, exc: LlmuxError, event_id: str | None) -> None:
        self.send(
            Error(
                error=ErrorDetail(type=exc.type, code=exc.code, message=exc.message, param=exc.param, event_id=event_id)
            )
        )

    # ---- input audio ----------------------------------------------------------------------------

    async def _append(self, audio: str) -> None:
        try:
            pcm = pcm16_to_float(base64.b64decode(audio, validate=True))
        except binascii.Error:
            raise InvalidRequest("audio must be base64 pcm16.", param="audio", code="invalid_audio") from None
        audio16 = self._resample(pcm)
        self._buffer = np.concatenate([self._buffer, audio16])
        detector = self._detector
        limit = int(self.service.registry.limits.max_audio_s * ASR_SAMPLE_RATE)
        if detector is None:
            if self._buffer.size > limit:
                self._clear()
                raise InvalidRequest("The input audio buffer is longer than this server transcribes.", param="audio")
            return
        # Silero scores a 32 ms window in about a millisecond: off the event loop.
        for boundary in await run_in_thread(lambda _: detector.feed(audio16), name="realtime-vad"):
            if boundary.kind == "start":
                self._speech_started(boundary.sample)
            else:
                self._speech_stopped(boundary.sample)
        if detector.speaking and self._buffer.size > limit:  # nobody pauses that long: end the turn here
            detector.reset()
            self._speech_stopped(self._buffer_at + self._buffer.size)
        if not detector.speaking:  # keep only what a next turn's prefix padding may need
            self._trim(self._buffer_at + self._buffer.size - self._padding())

    def _padding(self) -> int:
        td = self.session.turn_detection
        return int((td.prefix_padding_ms if td else 0) * ASR_SAMPLE_RATE / 1000)

    def _trim(self, keep_from: int) -> None:
        cut = max(0, min(keep_from - self._buffer_at, self._buffer.size))
        self._buffer, self._buffer_at = self._buffer[cut:], self._buffer_at + cut

    def _speech_started(self, sample: int) -> None:
        self._speech_item, self._speech_from = Item().id, sample
        self.send(SpeechStarted(audio_start_ms=sample * 1000 // VAD_RATE, item_id=self._speech_item))
        td = self.session.turn_detection
        if td is not None and td.interrupt_response:
            self._cancel_response("turn_detected")  # barge-in

    def _speech_stopped(self, sample: int) -> None:
        item_id = self._speech_item or Item().id
        self.send(SpeechStopped(audio_end_ms=sample * 1000 // VAD_RATE, item_id=item_id))
        start = max(self._buffer_at, self._speech_from - self._padding())
        audio = self._buffer[start - self._buffer_at : sample - self._buffer_at]
        self._trim(sample)
        self._speech_item = None
        td = self.session.turn_detection
        self._commit(audio, item_id, respond=td is not None and td.create_response)

    def _commit_buffer(self) -> None:
        if self._buffer.size < MIN_COMMIT_S * ASR_SAMPLE_RATE:
            raise InvalidRequest(
                f"The input audio buffer holds less than {MIN_COMMIT_S * 1000:.0f} ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        audio, item_id = self._buffer, self._speech_item or Item().id
        self._trim(self._buffer_at + self._buffer.size)
        self._speech_item = None
        if self._detector is not None:
            self._detector.reset()
        self._commit(audio, item_id, respond=False)

    def _clear(self) -> None:
        self._trim(self._buffer_at + self._buffer.size)
        self._speech_item = None
        if self._detector is not None:
            self._detector.reset()
        self.send(AudioCleared())

    def _commit(self, audio: np.ndarray, item_id: str, *, respond: bool) -> None:
        item = Item(id=item_id, role="user", content=[ContentPart(type="input_audio", transcript=None)])
        previous = self.conversation.append(item)
        self.send(AudioCommitted(item_id=item.id, previous_item_id=previous))
        self.send(ItemCreated(item=item, previous_item_id=previous))
        earlier = self._turn
        self._turn = asyncio.ensure_future(self._transcribe(item, audio, earlier, respond))

    async def _transcribe(
        self, item: Item, audio: np.ndarray, earlier: asyncio.Task[None] | None, respond: bool
    ) -> None:
        if earlier is not None:  # transcripts land in the order the turns were spoken
            await asyncio.gather(earlier, return_exceptions=True)
        try:
            text = await self.service.transcribe(self.session, audio)
        except LlmuxError as exc:
            detail = ErrorDetail(type=exc.type, code=exc.code, message=exc.message, param=exc.param)
            self.send(TranscriptionFailed(item_id=item.id, content_index=0, error=detail))
            return
        assert item.content is not None
        item.content[0].transcript = text
        seconds = round(audio.size / ASR_SAMPLE_RATE, 3)
        usage = TranscriptionUsage(seconds=seconds)
        self.send(TranscriptionCompleted(item_id=item.id, content_index=0, transcript=text, usage=usage))
        if respond and text.strip() and (self._response_task is None or self._response_task.done()):
            self._start_response(ResponseCreate())

    def _configure_vad(self) -> None:
        td = self.session.turn_detection
        if td is None:
            self._detector = None
        elif self._detector is None or (self._detector.threshold, self._detector.silence_ms) != (
            td.threshold,
            td.silence_duration_ms,
        ):
            self._detector = SpeechDetector(silero_scorer(), threshold=td.threshold, silence_ms=td.silence_duration_ms)

    # ---- responses ------------------------------------------------------------------------------

    def _create_response(self, event: ResponseCreate) -> None:
        if self._response_task is not None and not self._response_task.done():
            raise InvalidRequest(
                "A response is already in progress; cancel it first.", code="conversation_already_has_active_response"
            )
        self._start_response(event)

    def _start_response(self, event: ResponseCreate) -> None:
        options = event.response
        request = chat_request(self.session, self.conversation.items, options)
        speech = self.service.speech(self.session, options) if speaks(self.session, options) else None
        run = ResponseRun(
            self.service.chat, self.service.controller, self.send, request, speech, self.conversation.append
        )
        self.response = run
        self._response_task = asyncio.ensure_future(self._respond(run, self._turn))

    async def _respond(self, run: ResponseRun, transcribing: asyncio.Task[None] | None) -> None:
        """One response, with a record of its own, like an HTTP request's: what the chat turn
        notes (model, tokens, time to first token) goes into it, and it is logged and counted
        (metrics, rate limits, usage) when the response ends."""
        record = open_record(method="WEBSOCKET", path="/v1/realtime", route="/v1/realtime", status=0, bytes=0)
        record.update(client=self._client, response_id=run.id)
        try:
            if transcribing is not None:
                await asyncio.gather(asyncio.shield(transcribing), return_exceptions=True)
            await run.run()
        finally:
            t = run.timing
            record.update(
                status={"completed": 200, "cancelled": 499}.get(run.status, 500),
                cancelled=run.status == "cancelled" or None,
                reason=run.stopped_because,
                duration_ms=round((time.perf_counter() - t.started) * 1000, 2),
                first_text_s=t.since(t.first_text),
                first_audio_s=t.since(t.first_audio),
            )
            log.info("realtime.response", **{k: v for k, v in record.items() if v is not None and k != "route"})
            if self.service.observe is not None:
                self.service.observe(record)

    def _cancel_response(self, reason: str) -> None:
        task, run = self._response_task, self.response
        if task is None or task.done() or run is None:
            return
        run.stop(reason)
        self.outbox.drop(run.id)
        task.cancel()
