"""/v1/realtime: the OpenAI Realtime API over a WebSocket, GA or beta events per connection.

A client that sends ``OpenAI-Beta: realtime=v1`` (the SDK's ``client.beta.realtime``), or offers
the ``openai-beta.realtime-v1`` subprotocol (a browser), speaks beta; any other speaks GA (the
SDK's ``client.realtime``). The session is the same; only its wire differs
(``protocol.realtime_wire``).

The key guard runs before the upgrade (a bad key is refused with HTTP 403); the key may come as
``Authorization: Bearer`` or, from a browser, as the ``openai-insecure-api-key.<key>``
subprotocol, in which case the socket is accepted with the ``realtime`` subprotocol (a browser
closes a socket whose server picks none of those it offered). One task sends the session's
events in order; this handler reads client events and hands them to the session.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from litestar import Controller, WebSocket, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromQuery
from litestar.status_codes import WS_1008_POLICY_VIOLATION

from llmux.protocol.errors import LlmuxError
from llmux.protocol.realtime_events import Error, ErrorDetail
from llmux.protocol.realtime_wire import BetaWire, GAWire, Wire
from llmux.services.realtime import RealtimeSession
from llmux.services.realtime_config import RealtimeService
from llmux.services.realtime_conversation import Outbox

_encode = msgspec.json.Encoder().encode


async def _send_all(socket: WebSocket[Any, Any, Any], outbox: Outbox, wire: Wire) -> None:
    while True:
        for message in wire.encode(await outbox.get()):
            await socket.send_text(message.decode())


def wire_for(socket: WebSocket[Any, Any, Any]) -> Wire:
    """Beta if the client asked for it (header or browser subprotocol), else GA."""
    beta = "realtime=v1" in socket.headers.get("openai-beta", "").replace(" ", "").split(",")
    if beta or "openai-beta.realtime-v1" in socket.scope.get("subprotocols", []):
        return BetaWire()
    return GAWire()


async def serve_session(socket: WebSocket[Any, Any, Any], service: RealtimeService, model: str | None) -> None:
    offered = socket.scope.get("subprotocols", [])
    await socket.accept(subprotocols="realtime" if "realtime" in offered else None)
    try:
        session = RealtimeSession(service, service.new_session(model), wire_for(socket))
    except LlmuxError as exc:  # a model that is not a chat model: said in band, then closed
        detail = ErrorDetail(type=exc.type, code=exc.code, message=exc.message, param=exc.param)
        await socket.send_text(_encode(Error(error=detail)).decode())
        await socket.close(code=WS_1008_POLICY_VIOLATION, reason=exc.message[:120])
        return
    sender = asyncio.ensure_future(_send_all(socket, session.outbox, session.wire))
    session.start()
    try:
        while not sender.done():
            await session.handle(await socket.receive_text())
    except WebSocketDisconnect:
        pass
    finally:
        await session.close()  # stops the response and transcription, leases go back
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await sender


class RealtimeController(Controller):
    path = "/realtime"

    @websocket("/")
    async def realtime(
        self,
        socket: WebSocket[Any, Any, Any],
        realtime: NamedDependency[RealtimeService],
        model: FromQuery[str | None] = None,
    ) -> None:
        await serve_session(socket, realtime, model)
