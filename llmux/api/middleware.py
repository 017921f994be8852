"""One ``request.done`` event per HTTP request, with a request id bound for every log line
the request causes. Raw ASGI, so a streamed response pays one dict lookup per chunk."""

from __future__ import annotations

import secrets
import time
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("llmux.http")


def request_log(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = secrets.token_hex(6)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 0, "bytes": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                status["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            log.info(
                "request.done",
                method=scope["method"],
                path=scope["path"],
                status=status["code"],
                bytes=status["bytes"],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")

    return middleware
