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


def open_record(**fields: Any) -> dict[str, Any]:
    record = dict(fields)
    _RECORD.set(record)
    return record


def note(**fields: Any) -> None:
    """Add fields to the current request's line (a no-op outside a request)."""
    record = _RECORD.get()
    if record is not None:
        record.update(fields)


def client_of_request(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: every line a request causes names its client (the key's name),
    once the key guard has identified it — loads it triggers and worker threads included."""
    record = _RECORD.get()
    if record is not None and "client" not in event and record.get("client") is not None:
        event["client"] = record["client"]
    return event
