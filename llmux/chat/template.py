"""Render a chat template stored as Jinja text (the one inside a GGUF file), the way
transformers renders ``tokenizer.chat_template``: sandboxed, ``trim_blocks``/``lstrip_blocks``,
with ``raise_exception``, ``strftime_now`` and a ``tojson`` that keeps non-ASCII text."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmux.protocol.errors import InvalidRequest


def _raise(message: str) -> None:
    raise InvalidRequest(f"the model's chat template refused the conversation: {message}", param="messages")


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=8)
def compile_template(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def render(source: str, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None, **kwargs: Any) -> str:
    return compile_template(source).render(messages=messages, tools=tools, add_generation_prompt=True, **kwargs)
