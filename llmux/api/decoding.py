"""Request bodies -> Structs, with a 400 that names the offending ``param``."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from llmux.protocol.errors import InvalidRequest

T = TypeVar("T")
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def decode_json(body: bytes, type_: type[T]) -> T:
    if not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise invalid_request(exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # msgspec's own guard against a stack overflow: a 2 KB body can be 1,000 deep
        raise InvalidRequest("The request body is nested too deeply.", code="nesting_too_deep") from None


def invalid_request(exc: msgspec.ValidationError) -> InvalidRequest:
    """msgspec's ``Expected ... - at `$.a.b` `` as a 400 whose ``param`` is ``a.b`` (or the
    missing field's name)."""
    message = str(exc)
    match = _AT.search(message)
    param = match.group(1) if match else None
    message = _AT.sub("", message)
    missing = _MISSING.search(message) or _UNKNOWN.search(message)  # strict Structs name unknown fields
    if missing:
        param = f"{param}.{missing.group(1)}" if param else missing.group(1)
    if param:
        message = f"{message} (at {param})"
    return InvalidRequest(message, param=param or None, code="invalid_value")
