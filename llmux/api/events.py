"""``GET /v1/admin/events`` (admin key): the residency event stream, server-sent events.

A ``snapshot`` first, then every state change, lease, waiter count, swap and measured footprint
as it happens (``llmux/protocol/events.py``), and a keep-alive comment whenever nothing happened
for a while. A reader that falls behind gets a ``snapshot`` with ``resync: true`` instead of the
events it missed. The stream is an ordinary request to the disconnect watcher: it ends when the
client leaves, stops reading (``limits.stall_timeout_s``) or after ``limits.request_timeout_s``;
clients reconnect (the dashboard does) and start again from a snapshot.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Stream

from llmux.api.disconnect import closing_stream
from llmux.protocol.events import Event
from llmux.protocol.sse import KEEPALIVE
from llmux.residency.controller import ResidencyController
from llmux.residency.events import EventHub

_encode = msgspec.json.Encoder().encode


def frame(event: Event) -> bytes:
    kind = type(event).__struct_config__.tag
    return b"event: " + str(kind).encode() + b"\ndata: " + _encode(event) + b"\n\n"


async def _stream(hub: EventHub, keepalive_s: float) -> AsyncGenerator[bytes, None]:
    # Subscribed inside the generator: its ``finally`` then always runs (``closing_stream``
    # closes a started generator; one that never started holds nothing).
    subscription = hub.subscribe()
    try:
        while True:
            event = await subscription.next(keepalive_s)
            yield KEEPALIVE if event is None else frame(event)
    finally:
        subscription.close()


class EventsController(Controller):
    path = "/admin"
    opt = {"admin": True}  # noqa: RUF012 (Litestar reads and merges this class attribute)

    @get("/events", sync_to_thread=False)
    def events(self, controller: NamedDependency[ResidencyController], keepalive_s: NamedDependency[float]) -> Stream:
        body = _stream(controller.events, keepalive_s)
        return closing_stream(body, media_type="text/event-stream", headers={"Cache-Control": "no-store"})
