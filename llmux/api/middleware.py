"""The canonical line: one ``request.done`` event per HTTP request, written in a ``finally``.

The middleware binds a request id for every log line the request causes (worker threads
inherit it through the bridge's ``contextvars``), opens the request's record
(``services.record``) for the layers below to add to, and at the end — answered, failed or
cancelled — logs the record once and hands it to the metrics. Raw ASGI, so a streamed
response pays one dict update per chunk.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from llmux.services.record import open_headers, open_record

log = structlog.get_logger("llmux.http")


def canonical_line(observe: Callable[[dict[str, Any]], None]) -> Callable[[ASGIApp], ASGIApp]:
    def middleware(app: ASGIApp) -> ASGIApp:
        async def logged(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            request_id = secrets.token_hex(6)
            structlog.contextvars.bind_contextvars(request_id=request_id)
            record = open_record(method=scope["method"], path=scope["path"], status=0, bytes=0)
            extra = open_headers()
            started = time.perf_counter()

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    record["status"] = message["status"]
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode()), *extra]
                elif message["type"] == "http.response.body":
                    record["bytes"] += len(message.get("body", b""))
                await send(message)

            try:
                await app(scope, receive, sending)
            except asyncio.CancelledError:
                record["cancelled"] = True
                raise
            finally:
                record["route"] = scope.get("path_template")  # set by Litestar's router
                record["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
                log.info("request.done", **{k: v for k, v in record.items() if v is not None and k != "route"})
                observe(record)
                structlog.contextvars.unbind_contextvars("request_id")

        return logged

    return middleware
