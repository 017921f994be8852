"""One realtime response: the chat model writes, and each sentence is spoken while it goes on.

The chat turn runs through the chat service (its lease, its pipeline, tools included); its
text goes out as ``response.audio_transcript.delta`` (or ``response.text.delta`` for a text-only
response) and, sentence by sentence, to the speech model, whose audio goes out as
``response.audio.delta`` events of 24 kHz pcm16. The speech model is leased at the first
sentence and given back when the response ends, once its synthesis thread has stopped.

``stop`` (barge-in, ``response.cancel``) is synchronous: from that moment the response sends
nothing but its ``response.done`` (status ``cancelled``); the task is cancelled, which closes
the chat turn and the synthesis (their worker threads see their ``cancel`` flags).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from llmux.audio.pcm import Resampler, float_to_pcm16
from llmux.audio.text import SentenceStream
from llmux.chat.events import ContentDelta, Finish, ToolCallArgs, ToolCallStart
from llmux.engines.worker import ThreadStream
from llmux.protocol.chat import ChatCompletionRequest
from llmux.protocol.errors import LlmuxError
from llmux.protocol.realtime import PCM_RATE, ContentPart, Item
from llmux.protocol.realtime_events import (
    ArgumentsDelta,
    ArgumentsDone,
    AudioDelta,
    AudioDone,
    AudioTranscriptDelta,
    AudioTranscriptDone,
    Error,
    ErrorDetail,
    ItemCreated,
    OutputItemAdded,
    OutputItemDone,
    Part,
    PartAdded,
    PartDone,
    Response,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    TextDelta,
    TextDone,
    Usage,
)
from llmux.residency.controller import ResidencyController
from llmux.services.chat import ChatService
from llmux.services.realtime_conversation import Speech, Timing

FIRST_CLAUSE_CHARS = 24
"""The answer's first words are spoken at its first comma past this many characters, not at the
end of its first sentence: the first audio comes sooner."""
DELTA_SAMPLES = PCM_RATE // 5
"""Audio leaves in pieces of at most 200 ms, so a client can start playing early."""


class ResponseRun:
    def __init__(
        self,
        chat: ChatService,
        controller: ResidencyController,
        send: Callable[[ServerEvent], None],
        request: ChatCompletionRequest,
        speech: Speech | None,
        on_item: Callable[[Item], str | None],
    ) -> None:
        self.id = f"resp_{Item().id[5:]}"
        self.chat, self.controller = chat, controller
        self._send_out = send
        self.request, self.speech = request, speech
        self._on_item = on_item
        """Adds an output item to the conversation; returns the id of the item before it."""
        self.stopped_because: str | None = None
        self.status = "in_progress"
        self.timing = Timing()
        self.output: list[Item] = []
        self._message: Item | None = None
        self._text = ""
        self._calls: dict[int, Item] = {}
        self._usage: Usage | None = None
        self._speaking: list[asyncio.Future[None]] = []

    # ---- control (the session) ----------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Send nothing more but ``response.done``; the caller cancels the task."""
        if self.stopped_because is None:
            self.stopped_because = reason

    def _send(self, event: ServerEvent) -> None:
        if self.stopped_because is None:
            self._send_out(event)

    @property
    def modalities(self) -> list[str]:
        return ["text", "audio"] if self.speech else ["text"]

    async def run(self) -> None:
        self._send(ResponseCreated(response=Response(id=self.id, modalities=self.modalities)))
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = asyncio.ensure_future(self._speak(sentences)) if self.speech else None
        status: str = "completed"
        details: dict[str, Any] | None = None
        try:
            await self._write(sentences)
            sentences.put_nowait(None)
            if speaker is not None:
                await speaker
            self._close_items()
        except asyncio.CancelledError:  # stop(): this task is the unit of cancellation, it ends here
            self.stopped_because = self.stopped_because or "client_cancelled"
            status, details = "cancelled", {"type": "cancelled", "reason": self.stopped_because}
        except LlmuxError as exc:
            status = "failed"
            details = {"type": "failed", "error": {"type": exc.type, "code": exc.code, "message": exc.message}}
            self._send_out(_error(exc))
        finally:
            if speaker is not None and not speaker.done():
                speaker.cancel()
                await asyncio.gather(speaker, return_exceptions=True)
        self.status = status
        done = Response(
            id=self.id,
            status=status,  # type: ignore[arg-type]  # one of ResponseStatus
            status_details=details,
            output=self.output,
            usage=self._usage,
            modalities=self.modalities,
        )
        self._send_out(ResponseDone(response=done))

    # ---- the chat model -----------------------------------------------------------------------

    async def _write(self, sentences: asyncio.Queue[str | None]) -> None:
        prepared = await self.chat.prepare(self.request)
        splitter = SentenceStream(max_chars=200, first_clause_chars=FIRST_CLAUSE_CHARS)
        async for batch in self.chat.turn(prepared):
            for event in batch or ():
                if isinstance(event, ContentDelta) and event.text:
                    self._content(event.text)
                    for sentence in splitter.add(event.text):
                        sentences.put_nowait(sentence)
                elif isinstance(event, ToolCallStart):
                    self._call_started(event)
                elif isinstance(event, ToolCallArgs):
                    self._call_args(event)
                elif isinstance(event, Finish):
                    u = event.usage
                    self._usage = Usage(
                        total_tokens=u.total_tokens,
                        input_tokens=u.prompt_tokens,
                        output_tokens=u.completion_tokens,
                        input_token_details={"cached_tokens": u.cached_tokens, "text_tokens": u.prompt_tokens},
                        output_token_details={"text_tokens": u.completion_tokens, "audio_tokens": 0},
                    )
        for sentence in splitter.finish():
            sentences.put_nowait(sentence)

    def _content(self, text: str) -> None:
        if self._message is None:
            part = ContentPart(type="audio", transcript="") if self.speech else ContentPart(type="text", text="")
            self._message = self._add_item(Item(role="assistant", status="in_progress", content=[part]))
            kind = "audio" if self.speech else "text"
            self._send(PartAdded(response_id=self.id, item_id=self._message.id, part=_part(kind, "")))
        if self.timing.first_text is None:
            self.timing.first_text = time.perf_counter()
        self._text += text
        index = self.output.index(self._message)
        if self.speech:
            self._send(
                AudioTranscriptDelta(response_id=self.id, item_id=self._message.id, output_index=index, delta=text)
            )
        else:
            self._send(TextDelta(response_id=self.id, item_id=self._message.id, output_index=index, delta=text))

    def _add_item(self, item: Item) -> Item:
        self.output.append(item)
        previous = self._on_item(item)
        self._send(OutputItemAdded(response_id=self.id, output_index=len(self.output) - 1, item=item))
        self._send(ItemCreated(item=item, previous_item_id=previous))
        return item

    def _call_started(self, event: ToolCallStart) -> None:
        item = Item(type="function_call", status="in_progress", call_id=event.id, name=event.name, arguments="")
        self._calls[event.index] = self._add_item(item)

    def _call_args(self, event: ToolCallArgs) -> None:
        item = self._calls[event.index]
        item.arguments = (item.arguments or "") + event.text
        self._send(
            ArgumentsDelta(
                response_id=self.id,
                item_id=item.id,
                output_index=self.output.index(item),
                call_id=item.call_id or "",
                delta=event.text,
            )
        )

    def _close_items(self) -> None:
        message = self._message
        if message is not None:
            index = self.output.index(message)
            ids: dict[str, Any] = {"response_id": self.id, "item_id": message.id, "output_index": index}
            if self.speech:
                self._send(AudioDone(**ids))
                self._send(AudioTranscriptDone(**ids, transcript=self._text))
                message.content = [ContentPart(type="audio", transcript=self._text)]
            else:
                self._send(TextDone(**ids, text=self._text))
                message.content = [ContentPart(type="text", text=self._text)]
            self._send(PartDone(**ids, part=_part("audio" if self.speech else "text", self._text)))
            message.status = "completed"
            self._send(OutputItemDone(response_id=self.id, output_index=index, item=message))
        for item in self._calls.values():
            index = self.output.index(item)
            self._send(
                ArgumentsDone(
                    response_id=self.id,
                    item_id=item.id,
                    output_index=index,
                    call_id=item.call_id or "",
                    name=item.name or "",
                    arguments=item.arguments or "",
                )
            )
            item.status = "completed"
            self._send(OutputItemDone(response_id=self.id, output_index=index, item=item))

    # ---- the speech model ---------------------------------------------------------------------

    async def _speak(self, sentences: asyncio.Queue[str | None]) -> None:
        assert self.speech is not None
        lease = None
        resample: Resampler | None = None
        try:
            while (sentence := await sentences.get()) is not None:
                if lease is None:
                    lease = await self.controller.acquire(self.speech.physical)
                    resample = Resampler(lease.engine.sample_rate, PCM_RATE)
                assert resample is not None
                await self._say(lease.engine, sentence, resample)
        finally:
            if lease is not None:
                held = lease
                # The lease goes back when every synthesis thread has stopped, not before.
                gathered = asyncio.gather(*self._speaking)
                gathered.add_done_callback(lambda _: self.controller.release(held))

    async def _say(self, engine: Any, sentence: str, resample: Resampler) -> None:
        assert self.speech is not None and self._message is not None
        speech = self.speech
        stream: ThreadStream[np.ndarray] = ThreadStream(
            lambda cancel: engine.speak(sentence, speech.voice, speech.options, cancel),
            maxsize=4,
            name="realtime-speak",
        )
        self._speaking.append(_started(stream))
        try:
            async for batch in stream.batches():
                for pcm in batch:
                    self._audio(float_to_pcm16(resample(pcm)))
        finally:
            stream.close()

    def _audio(self, pcm16: bytes) -> None:
        assert self._message is not None
        if self.timing.first_audio is None and pcm16:
            self.timing.first_audio = time.perf_counter()
        index = self.output.index(self._message)
        step = DELTA_SAMPLES * 2
        for at in range(0, len(pcm16), step):
            delta = base64.b64encode(pcm16[at : at + step]).decode()
            self._send(AudioDelta(response_id=self.id, item_id=self._message.id, output_index=index, delta=delta))


def _started(stream: ThreadStream[Any]) -> asyncio.Future[None]:
    stream.start()
    return stream.stopped


def _part(kind: str, text: str) -> Part:
    return Part(type="audio", transcript=text) if kind == "audio" else Part(type="text", text=text)


def _error(exc: LlmuxError) -> ServerEvent:
    return Error(error=ErrorDetail(type=exc.type, code=exc.code, message=exc.message, param=exc.param))
