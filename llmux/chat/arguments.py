"""Tool-call arguments as OpenAI wants them: one JSON object, serialised as a string.

Models produce arguments in two shapes: JSON text (gpt-oss harmony, Hermes-style ChatML) and
XML-like parameters whose values are bare text (Qwen3.5). Malformed JSON is repaired with
``json_repair`` rather than passed on broken: a client that receives unparsable arguments
fails the whole turn, while a repaired object usually carries what the model meant.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import json_repair
import structlog

log = structlog.get_logger("llmux.chat")


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def _as_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        value = json_repair.loads(raw)
        log.info("chat.tool_args_repaired", raw_chars=len(raw))
    if isinstance(value, dict):
        return value
    # A bare value (or nothing usable) cannot be an arguments object; keep the text visible.
    return {} if value in ("", None) else {"value": value}


def json_arguments(raw: str) -> str:
    """JSON-object text from whatever the model wrote (empty -> ``{}``)."""
    if not raw.strip():
        return "{}"
    return json.dumps(_as_object(raw), ensure_ascii=False)


def parameter_types(tools: list[dict[str, Any]] | None, name: str) -> dict[str, Any]:
    """The JSON-schema ``properties`` of tool ``name`` (empty when unknown)."""
    for tool in tools or ():
        function = tool.get("function", tool)
        if function.get("name") == name:
            params = function.get("parameters") or {}
            props = params.get("properties") or {}
            return props if isinstance(props, dict) else {}
    return {}


def typed_value(text: str, schema: dict[str, Any] | None) -> Any:
    """A Qwen ``<parameter>`` value typed by the tool's schema: ``"7"`` is 7 for an integer
    parameter but stays ``"7"`` for a string one; without a schema, JSON if it parses."""
    kind = (schema or {}).get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if kinds == {"string"}:
        return text
    try:
        return json.loads(text)
    except ValueError:
        pass
    if kinds & {"object", "array"}:
        repaired = json_repair.loads(text)
        if repaired not in ("", None):
            return repaired
    if "boolean" in kinds and text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    return text


def xml_arguments(params: list[tuple[str, str]], tools: list[dict[str, Any]] | None, name: str) -> str:
    types = parameter_types(tools, name)
    values = {key: typed_value(value, types.get(key)) for key, value in params}
    return json.dumps(values, ensure_ascii=False)
