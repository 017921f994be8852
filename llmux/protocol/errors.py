"""One exception tree, one wire shape.

Code raises an ``LlmuxError`` subclass; one handler in ``api/errors.py`` turns it (or any
validation or HTTP error) into ``{"error": {"message", "type", "param", "code"}}`` — the
``ErrorBody`` below, which a stream also sends in-band once its headers are out.
"""

from __future__ import annotations

import msgspec


class LlmuxError(Exception):
    """Base of every error a client may see. Subclasses fix status, type and code."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    retry_after: float | None = None
    """Seconds after which a retry may succeed; sent as ``Retry-After`` (429 and 503)."""

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if retry_after is not None:
            self.retry_after = retry_after


class InvalidRequest(LlmuxError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(LlmuxError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(LlmuxError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class ModelNotFound(LlmuxError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(LlmuxError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class ModelCannotFit(LlmuxError):
    """The model is larger than the whole VRAM budget: it can never be loaded."""

    status = 507
    type = "server_error"
    code = "model_too_large"


class ModelLoadFailed(LlmuxError):
    status = 503
    type = "server_error"
    code = "model_load_failed"


class TooManyRequests(LlmuxError):
    """A queue is full: come back later (``Retry-After``)."""

    status = 429
    type = "rate_limit_error"
    code = "queue_full"


class ServiceUnavailable(LlmuxError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class RequestTimedOut(LlmuxError):
    status = 504
    type = "server_error"
    code = "request_timeout"


class ConfigError(LlmuxError):
    """A configuration file is malformed; the message names the path and the bad value."""

    status = 500
    type = "server_error"
    code = "config_error"


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


def error_body(exc: LlmuxError) -> ErrorBody:
    return ErrorBody(ErrorDetail(exc.message, exc.type, exc.param, exc.code))
