"""Bearer API keys from ``api_keys.yaml``, compared in constant time.

Every configured key is compared on every request (no early exit), so the time taken does not
tell which key, or how much of one, matched. Keys are never logged; the client's *name* is.
The ring follows the key store: a reload (SIGHUP, the admin API) swaps the whole list at once.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from llmux.protocol.errors import Forbidden, Unauthorized
from llmux.registry import ApiKey, ApiKeysFile
from llmux.services.access import Access
from llmux.services.record import note


class KeyRing:
    def __init__(self, keys: ApiKeysFile) -> None:
        self.replace(keys)

    def replace(self, keys: ApiKeysFile) -> None:
        self._keys = [(k, k.key.encode()) for k in keys.keys]  # one assignment: old or new, never a mix

    def identify(self, authorization: str | None) -> ApiKey | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        presented = token.strip().encode()
        found: ApiKey | None = None
        for entry, secret in self._keys:
            if hmac.compare_digest(presented, secret):
                found = entry
        return found


class RequireKey:
    """Guard for /v1 routes; handlers with ``opt={"public": True}`` are open (Open WebUI reads
    the audio model and voice lists without a key), ``opt={"admin": True}`` need an admin key.
    The client's name goes into the request's canonical line, and its key to the access gate
    (allowed models, rate limits). Async: Litestar runs a sync guard in a thread pool, where
    the key it binds would not reach the handler (and each request would pay a thread hop)."""

    def __init__(self, ring: KeyRing, access: Access | None = None) -> None:
        self.ring = ring
        self.access = access

    def __deepcopy__(self, memo: dict[int, Any]) -> RequireKey:
        """Litestar deep-copies a router's guards: the copy must share the ring a reload swaps and
        the limiter's counters."""
        return self

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get("public"):
            return
        client = self.ring.identify(connection.headers.get("authorization"))
        if client is None:
            raise Unauthorized("Missing or invalid API key. Send 'Authorization: Bearer <key>'.")
        note(client=client.name)
        if handler.opt.get("admin") and client.role != "admin":
            raise Forbidden("This endpoint needs an admin key.")
        if self.access is not None:
            self.access.bind(client)
