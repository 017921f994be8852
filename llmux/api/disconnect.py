"""Cancel a request's handler when its client goes away, or stops reading.

Litestar cancels a *streamed* response when the client disconnects, but not a plain handler:
a non-streamed chat, a transcription or a speech synthesis would run to its end for nobody,
holding the model's turn. This middleware listens for the ASGI ``http.disconnect`` once the
request body has been read and, if the response is not complete yet, cancels the handler; the
services then stop their worker threads (``cancel`` flag) and give the lease back when those
have stopped. The canonical line says ``cancelled``.

A client that stays connected but stops reading (a stalled stream) blocks the server's ``send``
once the socket buffers are full, and its stream would hold the model's lease for as long as
the connection lives: a ``send`` that makes no progress for ``stall_s`` cancels the handler
the same way (the canonical line says ``stalled``); the server then closes the connection. A
request still running after ``deadline_s`` is cancelled too: a 504 if no header went out yet,
else its stream ends.

A stream cancelled while its generator is suspended at a ``yield`` (blocked in ``send``) is
not closed by Litestar, so its ``finally`` — which stops the engine and releases the lease —
would wait for the garbage collector: every streamed response is made with ``closing_stream``,
and its generator is closed when the request ends, whichever way.

Only one reader of the server's ``receive`` after the body: this listener. The app's own later
``receive`` calls (Litestar's stream watcher) wait for the disconnect this listener saw.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from contextvars import ContextVar
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.response import Stream
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from llmux.protocol.errors import RequestTimedOut, error_body
from llmux.services.record import note

DISCONNECT: ReceiveMessage = {"type": "http.disconnect"}
_OPEN: ContextVar[list[AsyncGenerator[Any, None]] | None] = ContextVar("llmux_open_streams", default=None)


def closing_stream(body: AsyncGenerator[Any, None], **kwargs: Any) -> Stream:
    """A Litestar ``Stream`` of ``body`` whose generator is closed when the request ends."""
    streams = _OPEN.get()
    if streams is not None:
        streams.append(body)
    return Stream(body, **kwargs)


def cancel_on_disconnect(stall_s: float, deadline_s: float) -> Callable[[ASGIApp], ASGIApp]:
    return lambda app: _Watched(app, stall_s, deadline_s)


class _Watched:
    def __init__(self, app: ASGIApp, stall_s: float, deadline_s: float) -> None:
        self.app, self.stall_s, self.deadline_s = app, stall_s, deadline_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app, stall_s, deadline_s = self.app, self.stall_s, self.deadline_s
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        body_read, gone = asyncio.Event(), asyncio.Event()
        answered = False

        async def receiving() -> ReceiveMessage:
            if body_read.is_set():
                await gone.wait()
                return DISCONNECT
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        loop = asyncio.get_running_loop()
        begun = loop.time()
        sending_since: float | None = None
        headers_sent = False

        async def sending(message: Message) -> None:
            nonlocal answered, sending_since, headers_sent
            headers_sent = headers_sent or message["type"] == "http.response.start"
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            sending_since = loop.time()
            await send(message)
            sending_since = None

        async def watchdog() -> str:
            """Returns when one ``send`` has been blocked for ``stall_s``, or the request has run
            past its deadline."""
            while True:
                await asyncio.sleep(min(stall_s, deadline_s) / 4)
                now = loop.time()
                if sending_since is not None and now - sending_since > stall_s:
                    note(stalled=True)
                    return "stalled"
                if now - begun > deadline_s:
                    note(deadline_exceeded=True)
                    return "deadline"

        async def listen() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            if not answered:
                note(cancelled=True)  # gone before its answer, whoever stops the work
            gone.set()

        streams: list[AsyncGenerator[Any, None]] = []
        _OPEN.set(streams)  # the handler's task copies this context: it registers here
        handler = asyncio.ensure_future(app(scope, receiving, sending))
        listener = asyncio.ensure_future(listen())
        stalled = asyncio.ensure_future(watchdog())
        cancelled_here = False
        try:
            await asyncio.wait((handler, listener, stalled), return_when=asyncio.FIRST_COMPLETED)
            if not handler.done() and (not answered or stalled.done()):
                note(cancelled=True)  # the client left (or stalled) before its answer: stop the work
                handler.cancel()
                cancelled_here = True
            try:
                await handler
            except asyncio.CancelledError:
                this = asyncio.current_task()
                if not cancelled_here or (this is not None and this.cancelling()):
                    raise  # we are being cancelled ourselves (server shutdown)
            if cancelled_here and stalled.done() and stalled.result() == "deadline" and not headers_sent:
                await _timed_out(send, deadline_s)
        finally:
            listener.cancel()
            stalled.cancel()
            if not handler.done():
                handler.cancel()
            for body in streams:  # a no-op for a generator that ran to its end
                with contextlib.suppress(Exception):
                    await body.aclose()


async def _timed_out(send: Send, deadline_s: float) -> None:
    """A 504 for a request cancelled at its deadline before any header went out."""
    error = RequestTimedOut(f"The request did not finish within {deadline_s:g} s (limits.request_timeout_s).")
    note(error=error.code)
    body = msgspec.json.encode(error_body(error))
    await send(
        {"type": "http.response.start", "status": error.status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
