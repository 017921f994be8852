"""An upstream's failures as llmux errors in the OpenAI shape (``engines.upstream``).

- the upstream's 4xx is the client's fault: its status and message are relayed (but a 401/403
  means *llmux's* key for the upstream is wrong: a 502, the client can do nothing about it; a
  408 is a 504);
- its 5xx: a 502, except 503 and 504, which keep their meaning (and a 503 its ``Retry-After``).

Error bodies come in several shapes: OpenAI's, llmux's and llama-server's ``{"error": {...}}``,
``{"error": "..."}``, vLLM's and FastAPI's ``{"message": ...}`` / ``{"detail": ...}``, or text.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from llmux.protocol.errors import LlmuxError

ERROR_BODY_LIMIT = 64 * 1024
"""Bytes of an upstream's error body read for its message (the rest is not needed)."""


class UpstreamError(LlmuxError):
    """Anything an upstream answered or failed to answer; the status is per instance."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, retry_after=retry_after)
        self.status = status
        self.upstream_status = upstream_status
        """What the upstream answered (None: it did not answer)."""
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")


class _Detail(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class _ErrorEnvelope(msgspec.Struct):
    """``{"error": {...}}`` (OpenAI, llmux, llama-server), ``{"error": "..."}``, or vLLM's and
    FastAPI's ``{"message": ...}`` / ``{"detail": ...}``."""

    error: _Detail | str | None = None
    message: str | None = None
    type: str | None = None
    param: str | None = None
    code: str | int | None = None
    detail: Any = None


def _parse_error(body: bytes) -> _Detail:
    try:
        envelope = msgspec.json.decode(body, type=_ErrorEnvelope)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body.decode("utf-8", "replace").strip()
        return _Detail(message=text[:500] or None)
    if isinstance(envelope.error, _Detail):
        return envelope.error
    message = envelope.error or envelope.message
    if message is None and envelope.detail is not None:
        message = envelope.detail if isinstance(envelope.detail, str) else msgspec.json.encode(envelope.detail).decode()
    return _Detail(message, envelope.type, envelope.param, envelope.code)


def _retry_after(headers: httpx.Headers) -> float | None:
    try:
        value = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def mapped_error(status: int, body: bytes, headers: httpx.Headers, model_id: str) -> UpstreamError:
    """An upstream's error response as llmux's (see the module docstring)."""
    error = _mapping(status, body, headers, model_id)
    error.upstream_status = status
    return error


def _mapping(status: int, body: bytes, headers: httpx.Headers, model_id: str) -> UpstreamError:
    detail = _parse_error(body)
    said = detail.message or f"HTTP {status}"
    code = detail.code if isinstance(detail.code, str) else None
    if status in (401, 403, 407):
        return UpstreamError(
            502,
            f"The upstream serving {model_id!r} refused llmux's credentials (HTTP {status}: {said}); "
            "check api_key in models.yaml.",
            code="upstream_auth_failed",
        )
    if status == 408:
        return UpstreamError(504, f"The upstream serving {model_id!r} timed out: {said}", code="upstream_timeout")
    if status < 500:
        kind = detail.type if isinstance(detail.type, str) and detail.type else None
        if status == 429:
            kind = "rate_limit_error"
        return UpstreamError(
            status,
            said,
            type=kind,
            param=detail.param,
            code=code or "upstream_rejected",
            retry_after=_retry_after(headers),
        )
    mapped = status if status in (503, 504) else 502
    return UpstreamError(
        mapped,
        f"The upstream serving {model_id!r} failed (HTTP {status}: {said}).",
        code=code if mapped == 503 and code else "upstream_error",
        retry_after=_retry_after(headers) if mapped == 503 else None,
    )
