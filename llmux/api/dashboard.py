"""The live dashboard (``GET /ui``) and its feed (``GET /v1/admin/events``).

The feed (admin key) is the residency event stream as server-sent events: a ``snapshot`` first,
then every state change, lease, waiter count, swap and measured footprint as it happens
(``llmux/protocol/events.py``), and a keep-alive comment whenever nothing happened for a while. A
reader that falls behind gets a ``snapshot`` with ``resync: true`` instead of the events it missed.
The stream is an ordinary request to the disconnect watcher: it ends when the client leaves, stops
reading (``limits.stall_timeout_s``) or after ``limits.request_timeout_s``; clients reconnect (the
dashboard does) and start again from a snapshot.

The dashboard is one HTML page, one stylesheet and one small script (``static/``), no build step
and nothing fetched from elsewhere, so it works offline. The page holds no data and needs no key;
everything it shows comes from the admin API with the admin key the operator types into its form.
How the key travels, and why (``static/dashboard.js`` says the same):

- A browser cannot send an ``Authorization`` header on a navigation, and a cookie would be sent
  by the browser on its own (cross-site requests included: CSRF). The key is kept in the tab's
  ``sessionStorage`` (gone when the tab closes) and the script sends it as a bearer header.
- ``EventSource`` cannot send headers, and a key in a URL ends up in logs and the history: the
  script reads the event stream with ``fetch()`` and parses the SSE frames itself.

Remote upstreams (``backend: openai``) are not residency: their state comes from health polls
and relays, so the page polls ``GET /v1/admin/upstreams`` every few seconds rather than reading
them from this feed.

A strict Content-Security-Policy (same-origin script and style only, no inline code) keeps an
injected model name or error text from ever running as script; the script writes text, never HTML.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import cache
from pathlib import Path

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Stream

from llmux import __version__
from llmux.api.disconnect import closing_stream
from llmux.api.openapi import Doc, sse
from llmux.protocol.errors import TooManyRequests
from llmux.protocol.events import Event, ResidencyEvent
from llmux.protocol.sse import KEEPALIVE
from llmux.residency.controller import ResidencyController
from llmux.residency.events import MAX_SUBSCRIBERS, EventHub
from llmux.services.chat import ChatService

_encode = msgspec.json.Encoder().encode
STATIC = Path(__file__).with_name("static")
FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def frame(event: Event) -> bytes:
    kind = type(event).__struct_config__.tag
    return b"event: " + str(kind).encode() + b"\ndata: " + _encode(event) + b"\n\n"


async def _stream(hub: EventHub, keepalive_s: float) -> AsyncGenerator[bytes, None]:
    # Subscribed inside the generator: its ``finally`` then always runs (``closing_stream``
    # closes a started generator; one that never started holds nothing).
    subscription = hub.subscribe()
    try:
        while not subscription.closed:
            event = await subscription.next(keepalive_s)
            yield KEEPALIVE if event is None else frame(event)
    finally:
        subscription.close()


class EventsController(Controller):
    path = "/admin"
    opt = {"admin": True}  # noqa: RUF012 (Litestar reads and merges this class attribute)
    # In /schema as an event stream of the ``ResidencyEvent`` union; an endless stream, so the
    # schemathesis suite documents it but does not fuzz it.

    @get("/events", sync_to_thread=False, opt={"openapi": Doc(ok=(sse(ResidencyEvent, done=False),))})
    def events(self, controller: NamedDependency[ResidencyController], chat: NamedDependency[ChatService]) -> Stream:
        if len(controller.events.subscribers) >= MAX_SUBSCRIBERS:
            raise TooManyRequests(
                f"{MAX_SUBSCRIBERS} event streams are open already", code="too_many_streams", retry_after=5
            )
        body = _stream(controller.events, chat.keepalive_s)  # the chat streams' keep-alive cadence
        return closing_stream(
            body, media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )


@cache
def _read(name: str) -> bytes:
    text = (STATIC / name).read_text(encoding="utf-8")
    return text.replace("{{version}}", __version__).encode()


class UiController(Controller):
    path = "/ui"
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def page(self) -> Response[bytes]:
        return Response(_read("dashboard.html"), media_type="text/html; charset=utf-8", headers=HEADERS)

    @get("/{name:str}", sync_to_thread=False)
    def asset(self, name: FromPath[str]) -> Response[bytes]:
        if name not in FILES:
            raise NotFoundException(f"no file {name!r} under /ui")
        return Response(_read(name), media_type=FILES[name], headers=HEADERS)
