"""Every failure leaves as ``{"error": {"message", "type", "param", "code"}}``.

Mapped here: our ``LlmuxError`` tree, Litestar's HTTP exceptions (404 route, 405, 413 body
too large, its own validation errors) and, as the last resort, any other exception (500 with a
fixed message, the details only in the log).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from llmux.protocol.errors import ErrorBody, ErrorDetail, LlmuxError, error_body
from llmux.services.record import note

log = structlog.get_logger("llmux.api")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def _response(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        content=msgspec.json.encode(body), status_code=status, media_type="application/json", headers=headers
    )


def handle_llmux_error(_: Request[Any, Any, Any], exc: LlmuxError) -> Response[Any]:
    note(error=exc.code)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return _response(exc.status, error_body(exc), headers or None)


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    message = exc.detail or "request failed"
    param = None
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict):
            param = first.get("key")
            message = f"{first.get('message', message)}" + (f" (param {param!r})" if param else "")
    if status == 413:
        message = "The request body is larger than this endpoint accepts."
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return _response(status, ErrorBody(ErrorDetail(message, kind, param, _CODES.get(status))), exc.headers)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("request.crashed", path=request.url.path, error=repr(exc))
    body = ErrorBody(
        ErrorDetail("The server failed while handling this request.", "server_error", None, "internal_error")
    )
    return _response(HTTP_500_INTERNAL_SERVER_ERROR, body)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LlmuxError: handle_llmux_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
