"""Render a chat template stored as Jinja text (the one inside a GGUF file), the way
transformers renders ``tokenizer.chat_template``: sandboxed, ``trim_blocks``/``lstrip_blocks``,
with ``raise_exception``, ``strftime_now`` and a ``tojson`` that keeps non-ASCII text."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmux.protocol.errors import InvalidRequest


def _raise(message: str) -> None:
    raise InvalidRequest(f"the model's chat template refused the conversation: {message}", param="messages")


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@lru_cache(maxsize=8)
def compile_template(source: str) -> jinja2.Template:
    return _environment().from_string(source)


@lru_cache(maxsize=8)
def template_variables(source: str) -> frozenset[str]:
    """The variables a template reads (``tools``: it writes tool definitions itself)."""
    return frozenset(jinja2.meta.find_undeclared_variables(_environment().parse(source)))


def render(source: str, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None, **kwargs: Any) -> str:
    return compile_template(source).render(messages=messages, tools=tools, add_generation_prompt=True, **kwargs)
