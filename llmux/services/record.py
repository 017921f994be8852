"""The canonical line of a request: the fields every layer learns while serving it.

The HTTP middleware opens a record per request and writes it as one ``request.done`` event in
a ``finally`` — so failed and cancelled requests are logged and counted too. Services and the
key guard add what they know (the client's name, the model, tokens, time to first token, how
it ended) with ``note``. The record is a dict in a ``ContextVar``: tasks and worker threads
started for the request see the same one.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

_RECORD: ContextVar[dict[str, Any] | None] = ContextVar("llmux_request_record", default=None)
_HEADERS: ContextVar[list[tuple[bytes, bytes]] | None] = ContextVar("llmux_response_headers", default=None)


def open_record(**fields: Any) -> dict[str, Any]:
    record = dict(fields)
    _RECORD.set(record)
    return record


def open_headers() -> list[tuple[bytes, bytes]]:
    """Headers the layers below want on the response, whatever it turns out to be (an answer,
    a stream or an error): the middleware adds them when the response starts."""
    headers: list[tuple[bytes, bytes]] = []
    _HEADERS.set(headers)
    return headers


def add_header(name: str, value: str) -> None:
    """Put a header on the current request's response (a no-op outside a request)."""
    headers = _HEADERS.get()
    if headers is not None:
        headers.append((name.encode("latin-1"), value.encode("latin-1")))


def note(**fields: Any) -> None:
    """Add fields to the current request's line (a no-op outside a request)."""
    record = _RECORD.get()
    if record is not None:
        record.update(fields)


def noted(field: str) -> Any:
    """A field of the current request's line (None outside a request, or if not noted)."""
    record = _RECORD.get()
    return None if record is None else record.get(field)


def client_of_request(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: every line a request causes names its client (the key's name),
    once the key guard has identified it — loads it triggers and worker threads included."""
    record = _RECORD.get()
    if record is not None and "client" not in event and record.get("client") is not None:
        event["client"] = record["client"]
    return event
