"""What the calling key may do: which models, and how much (``api_keys.yaml``, per key).

The key guard binds the request's key (``Access.bind``); a service calls ``admit(model,
tokens=...)`` once it has validated the request and before it leases a model or sends a header,
so a refusal is a plain 404/429 response, never an error inside a stream. The request's end
(``Access.request_done``, fed the canonical record like the metrics) settles what admission
reserved.

A model the key may not use is a 404 ``model_not_found`` worded exactly like a model that does
not exist, as OpenAI answers for a model an organisation has no access to: a 403 would tell the
client which names are served. Names are compared after resolving aliases, so allowing a
virtual model allows its aliases and the other way round (they are one model).
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from typing import Any

from llmux.registry import ApiKey, Registry
from llmux.registry.registry import unknown_model
from llmux.services.ratelimit import Limiter, RateLimited
from llmux.services.record import add_header, note, noted

_GATE: ContextVar[tuple[ApiKey, Access] | None] = ContextVar("llmux_access", default=None)


class Access:
    def __init__(self, registry: Registry, limiter: Limiter | None = None) -> None:
        self.registry = registry
        self.limiter = limiter or Limiter()

    def bind(self, key: ApiKey) -> None:
        """The request being served is ``key``'s (called by the key guard)."""
        _GATE.set((key, self))

    def allows(self, key: ApiKey, model: str) -> bool:
        if key.models is None:
            return True
        canonical = self.registry.aliases.get(model, model)
        return any(self.registry.aliases.get(m, m) == canonical for m in key.models)

    def check(self, key: ApiKey, model: str, tokens: int) -> None:
        if noted("reserved_tokens") is not None:
            return  # admitted already (a service built on another's prepare): one slot, one charge
        if not self.allows(key, model):
            note(refused="model")
            raise unknown_model(model)
        try:
            reserved, headers = self.limiter.admit(key, tokens)
        except RateLimited as exc:
            note(refused=exc.type)
            _send([*exc.headers, ("retry-after-ms", str(math.ceil((exc.retry_after or 0) * 1000)))])
            raise
        note(reserved_tokens=reserved)
        _send(headers)

    def request_done(self, record: dict[str, Any]) -> None:
        """Settle an admitted request's reservation with the tokens it used."""
        if "reserved_tokens" in record and record.get("client"):
            used = (record.get("prompt_tokens") or 0) + (record.get("completion_tokens") or 0)
            self.limiter.settle(record["client"], record["reserved_tokens"], used)


def admit(model: str, *, tokens: int = 0) -> None:
    """Admit the current request for ``model`` under its key's models and limits: a 404 or a
    429 (``Retry-After``, ``x-ratelimit-*``) if not. A second call in the same request does
    nothing; a no-op outside a request, or on a route without a key."""
    gate = _GATE.get()
    if gate is not None:
        key, access = gate
        access.check(key, model, tokens)


def allowed(model: str) -> bool:
    """May the current request's key use ``model``? (``/v1/models`` lists only those.)"""
    gate = _GATE.get()
    return gate is None or gate[1].allows(gate[0], model)


def current_client() -> str | None:
    """The name of the current request's key (None outside a request with a key)."""
    gate = _GATE.get()
    return None if gate is None else gate[0].name


def _send(headers: list[tuple[str, str]]) -> None:
    for name, value in headers:
        add_header(name, value)
