"""A remote OpenAI-compatible server as a physical model (backend ``openai``).

One ``httpx.AsyncClient`` per upstream (its connection pool, its timeouts, the upstream's key
in its default headers) and one background task that polls ``GET {base_url}/models``. Every
failure becomes an ``LlmuxError`` in the OpenAI shape:

- the upstream's 4xx is the client's fault: its status and message are relayed (but a 401/403
  means *llmux's* key for the upstream is wrong: a 502, the client can do nothing about it);
- a 5xx, a response that is not what the endpoint promises, or a connection cut: 502;
- the upstream unreachable (connection refused, DNS): 503, and the upstream is marked down
  until a poll succeeds — requests meanwhile fail at once with a 503 and ``Retry-After``;
- the upstream silent for ``read_timeout_s`` (or unreachable within ``connect_timeout_s``): 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping
from typing import Any

import anyio
import httpx
import msgspec
import structlog

from llmux.engines.upstream_errors import ERROR_BODY_LIMIT, UpstreamError, mapped_error
from llmux.protocol.errors import ConfigError, LlmuxError
from llmux.registry import PhysicalModel
from llmux.registry.options import OpenAIOptions

log = structlog.get_logger("llmux.upstream")
__all__ = ["Upstream", "UpstreamError", "close_response", "mapped_error", "read_limited"]

HEALTH_BODY_LIMIT = 8 * 1024 * 1024
"""Bytes of ``GET /models`` read by a health poll (a cut list is not JSON: the poll fails)."""


class Upstream:
    """The connection to one upstream server, and what its health poll last saw."""

    def __init__(
        self, spec: PhysicalModel, options: OpenAIOptions, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.id = spec.id
        self.options = options
        self.model = options.model or spec.id
        """The upstream's name for the model (written into every forwarded request)."""
        self.base_url = options.base_url.rstrip("/")
        self.shown_url = str(
            httpx.URL(self.base_url).copy_with(username=None, password=None, query=None, fragment=None)
        )
        """``base_url`` without credentials (nor a query, where a key could hide), for logs, ``/health``
        and the dashboard."""
        headers = {"Authorization": f"Bearer {key}"} if (key := _api_key(spec.id, options)) else {}
        self.client = httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(options.read_timeout_s, connect=options.connect_timeout_s),
            limits=httpx.Limits(max_connections=options.max_connections),
            transport=transport,
            follow_redirects=False,
        )
        self.healthy: bool | None = None
        """None until the first poll (requests are tried), then what the last poll or request saw."""
        self.last_error: str | None = None
        self.checked_at: float | None = None
        self._poller: asyncio.Task[None] | None = None
        self._open: set[httpx.Response] = set()
        """Responses being relayed now (closed ones are dropped at the next poll)."""
        self._sending = 0
        """Requests sent and waiting for their answer's headers."""

    # ---- health -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name=f"upstream-health-{self.id}")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self.client.aclose()

    async def _poll(self) -> None:
        while True:
            self._open = {r for r in self._open if not r.is_closed}
            if not self._open:
                # A response in flight already proves the upstream alive, and a poll beside it
                # is not harmless everywhere: llama-cpp-python's server ends a running stream
                # when any other request arrives (GET /v1/models included).
                await self.check()
            await asyncio.sleep(self.options.health_interval_s)

    async def check(self) -> bool:
        """One health poll: ``GET /models`` answers 200 with JSON."""
        try:
            timeout = httpx.Timeout(min(self.options.read_timeout_s, 10.0), connect=self.options.connect_timeout_s)
            async with self.client.stream("GET", "models", timeout=timeout) as response:
                body = await read_limited(response, HEALTH_BODY_LIMIT)  # a hostile list cannot fill memory
            if response.status_code != 200:
                raise mapped_error(response.status_code, body[:ERROR_BODY_LIMIT], response.headers, self.id)
            msgspec.json.decode(body)
        except (httpx.HTTPError, LlmuxError, msgspec.DecodeError) as exc:
            self._mark(False, _describe(exc))
        else:
            self._mark(True, None)
        self.checked_at = time.time()
        return bool(self.healthy)

    def _mark(self, healthy: bool, error: str | None) -> None:
        if healthy != self.healthy:
            event = "upstream.up" if healthy else "upstream.down"
            log.info(event, upstream=self.id, url=self.shown_url, error=error)
        self.healthy, self.last_error = healthy, error

    def ensure_up(self) -> None:
        """Fail fast while the last poll (or request) found the upstream unreachable."""
        if self.healthy is False:
            raise UpstreamError(
                503,
                f"The upstream serving {self.id!r} is unavailable ({self.last_error}); retry later.",
                code="upstream_unavailable",
                retry_after=self.options.health_interval_s,
            )

    @property
    def in_flight(self) -> int:
        """Requests relayed now: waiting for the upstream's headers, or their answer still being read."""
        return self._sending + sum(1 for r in self._open if not r.is_closed)

    # ---- requests ---------------------------------------------------------------------------

    async def send(
        self,
        path: str,
        *,
        json: bytes | None = None,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """POST to ``{base_url}/{path}``; the open response once its status is a success (the
        caller reads it and closes it). Errors raise, mapped; the response is closed then."""
        self.ensure_up()
        # No X-Request-ID of llmux's own: llama-cpp-python's server refuses one that is not a UUID (400).
        headers = {"Content-Type": "application/json"} if json is not None else None
        request = self.client.build_request("POST", path, content=json, files=files, data=data, headers=headers)
        self._sending += 1
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self.transport_error(exc) from exc
        finally:
            self._sending -= 1
        if response.status_code < 400:
            self._open.add(response)
            return response
        try:
            body = await read_limited(response, ERROR_BODY_LIMIT)
        except httpx.HTTPError:
            body = b""
        finally:
            await close_response(response)
        raise mapped_error(response.status_code, body, response.headers, self.id)

    def transport_error(self, exc: Exception) -> UpstreamError:
        """A failure below HTTP, as the client sees it (and, if unreachable, the health state)."""
        if isinstance(exc, httpx.ConnectError):
            self._mark(False, _describe(exc))
            return UpstreamError(
                503,
                f"The upstream serving {self.id!r} is unreachable ({_describe(exc)}).",
                code="upstream_unavailable",
                retry_after=self.options.health_interval_s,
            )
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamError(
                504,
                f"The upstream serving {self.id!r} did not answer in time ({_describe(exc)}).",
                code="upstream_timeout",
            )
        return UpstreamError(502, f"The upstream serving {self.id!r} failed ({_describe(exc)}).", code="upstream_error")

    def malformed(self, what: str) -> UpstreamError:
        return UpstreamError(502, f"The upstream serving {self.id!r} sent {what}.", code="upstream_bad_response")


async def close_response(response: httpx.Response) -> None:
    """Close, even in a cancelled request: Litestar cancels through anyio, where every await
    after the cancellation is cancelled again, and an upstream response left open keeps its
    connection (and the upstream's generation) going for nobody."""
    with anyio.CancelScope(shield=True):
        await response.aclose()


async def read_limited(response: httpx.Response, limit: int) -> bytes:
    """The body, at most ``limit`` bytes (a hostile upstream cannot make llmux buffer without end)."""
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_bytes():
        size += len(part)
        parts.append(part)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


def _api_key(model_id: str, options: OpenAIOptions) -> str | None:
    if options.api_key_env is None:
        return options.api_key
    key = os.environ.get(options.api_key_env)
    if not key:
        raise ConfigError(
            f"$.physical.{model_id}.options.api_key_env: the environment variable {options.api_key_env!r} is not set"
        )
    return key


def _describe(exc: BaseException) -> str:
    if isinstance(exc, LlmuxError):
        return exc.message
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
