"""A realtime session's conversation items, the queue of events waiting for its socket, and how
a response speaks and is timed."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from llmux.engines.base import SpeakOptions
from llmux.protocol.errors import InvalidRequest
from llmux.protocol.realtime import Item, ItemTruncate
from llmux.protocol.realtime_events import (
    ArgumentsDelta,
    AudioDelta,
    AudioTranscriptDelta,
    ItemCreated,
    ItemDeleted,
    ItemRetrieved,
    ItemTruncated,
    ServerEvent,
    TextDelta,
)

_DELTAS = (AudioDelta, AudioTranscriptDelta, TextDelta, ArgumentsDelta)


@dataclass(frozen=True, slots=True)
class Speech:
    """How a response speaks: the physical TTS model, its voice and options."""

    physical: str
    voice: str
    options: SpeakOptions


@dataclass
class Timing:
    started: float = field(default_factory=time.perf_counter)
    first_text: float | None = None
    first_audio: float | None = None

    def since(self, at: float | None) -> float | None:
        return None if at is None else round(at - self.started, 3)


class Outbox:
    """Server events waiting for the socket, in order. A cancelled response's queued deltas are
    dropped (``drop``): after a barge-in the client hears no more of the old answer."""

    def __init__(self) -> None:
        self._events: deque[ServerEvent] = deque()
        self._ready = asyncio.Event()

    def put(self, event: ServerEvent) -> None:
        self._events.append(event)
        self._ready.set()

    def drop(self, response_id: str) -> None:
        self._events = deque(
            e for e in self._events if not (isinstance(e, _DELTAS) and getattr(e, "response_id", None) == response_id)
        )

    async def get(self) -> ServerEvent:
        while not self._events:
            self._ready.clear()
            await self._ready.wait()
        return self._events.popleft()


class Conversation:
    """The items a response is written from, in order."""

    def __init__(self, send: Callable[[ServerEvent], None]) -> None:
        self.items: list[Item] = []
        self._send = send

    def append(self, item: Item) -> str | None:
        """Add an item the server made (its own events announce it); the id of the one before."""
        previous = self.items[-1].id if self.items else None
        self.items.append(item)
        return previous

    def add(self, item: Item, previous_item_id: str | None) -> None:
        """``conversation.item.create``: after ``previous_item_id``, else at the end."""
        if any(i.id == item.id for i in self.items):
            raise InvalidRequest(f"An item with id {item.id!r} already exists.", param="item.id")
        if any(part.audio for part in item.content or ()):
            raise InvalidRequest(
                "Audio inside conversation.item.create is not supported: send it with input_audio_buffer.append.",
                param="item.content",
            )
        at = len(self.items)
        if previous_item_id is not None:
            at = self._index(previous_item_id, "previous_item_id") + 1
        previous = self.items[at - 1].id if at else None
        self.items.insert(at, item)
        self._send(ItemCreated(item=item, previous_item_id=previous))

    def _index(self, item_id: str, param: str) -> int:
        for i, item in enumerate(self.items):
            if item.id == item_id:
                return i
        raise InvalidRequest(f"No item with id {item_id!r}.", param=param, code="item_not_found")

    def delete(self, item_id: str) -> None:
        del self.items[self._index(item_id, "item_id")]
        self._send(ItemDeleted(item_id=item_id))

    def retrieve(self, item_id: str) -> None:
        """``conversation.item.retrieve``: the item as it is now (an input audio item holds
        its transcript, not its audio: llmux keeps no audio once it is transcribed)."""
        self._send(ItemRetrieved(item=self.items[self._index(item_id, "item_id")]))

    def truncate(self, event: ItemTruncate) -> None:
        """The user heard an answer only up to ``audio_end_ms``: its text is kept (llmux does
        not align words to audio); the event is acknowledged so clients can go on."""
        self._index(event.item_id, "item_id")
        self._send(
            ItemTruncated(item_id=event.item_id, content_index=event.content_index, audio_end_ms=event.audio_end_ms)
        )
