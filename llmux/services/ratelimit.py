"""Per-key rate limits: requests per minute, tokens per minute, requests at once.

Each per-minute limit is a token bucket that holds at most a minute's allowance and refills
continuously (``limit / 60`` per second), so a client may burst up to its limit and then goes
at the limit's rate, and ``Retry-After`` is exact: the time until the bucket holds what the
request needs. Tokens are not known before a request runs, so admission *reserves* an estimate
(the prompt's size plus the completion budget, at most the whole minute's allowance, so a large
``max_tokens`` is admitted once the bucket is full) and the request's end *settles* it with the
tokens it really used — a refund, or a debt the next requests wait for. No maintained library
does reserve-then-settle (``limits`` and ``pyrate-limiter`` only add hits), and the bucket is a
few lines with property tests (tests/property/test_ratelimit.py).

Everything runs on the event loop (one caller at a time), keyed by the client's name, so a key
reload keeps each client's counters and applies its new limits to them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from llmux.protocol.errors import LlmuxError
from llmux.registry.config import ApiKey, KeyLimits

Headers = list[tuple[str, str]]

DEFAULT_COMPLETION_RESERVE = 1024
"""Tokens reserved for the completion of a request that sets no ``max_tokens``."""


class RateLimited(LlmuxError):
    """Over one of the calling key's limits: OpenAI's ``rate_limit_exceeded``, with its ``type``
    saying which kind (``requests`` or ``tokens``)."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, kind: str, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.type = kind
        self.headers: Headers = []


class TokenBucket:
    """At most ``per_minute`` units, refilled at ``per_minute / 60`` per second. The level may go
    below zero when a settlement charges more than was reserved."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.level = self.capacity
        self.at = now

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        if now > self.at:
            self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
            self.at = now

    def wait_s(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` can be taken (0: now)."""
        self.refill(now)
        return 0.0 if self.level >= cost else (cost - self.level) / self.rate

    def add(self, amount: float, now: float) -> None:
        """Take (negative ``amount``) or give back; never above the capacity."""
        self.refill(now)
        self.level = min(self.capacity, self.level + amount)

    def resize(self, per_minute: int, now: float) -> None:
        """A reloaded limit: what was used stays used."""
        self.refill(now)
        used = self.capacity - self.level
        self.capacity = float(per_minute)
        self.level = min(self.capacity, self.capacity - used)

    def remaining(self) -> int:
        return max(0, math.floor(self.level))

    def reset_s(self) -> float:
        """Seconds until the bucket is full again (OpenAI's ``x-ratelimit-reset-*``)."""
        return max(0.0, (self.capacity - self.level) / self.rate)


@dataclass
class _Client:
    requests: TokenBucket | None = None
    tokens: TokenBucket | None = None
    active: int = 0


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 1000) / 1000:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


class Limiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._clients: dict[str, _Client] = {}

    def admit(self, key: ApiKey, tokens: int) -> tuple[int, Headers]:
        """Admit one request of ``key`` wanting ``tokens``: the tokens reserved and the
        ``x-ratelimit-*`` headers to send; or raise ``RateLimited`` (its ``headers`` set).
        Nothing is taken from a refused request."""
        now = self._clock()
        client = self._sync(key.name, key.limits, now)
        limits = key.limits
        reserve = min(tokens, limits.tokens_per_minute) if limits.tokens_per_minute else 0
        refusal: RateLimited | None = None
        if limits.concurrent_requests is not None and client.active >= limits.concurrent_requests:
            refusal = RateLimited(
                f"Rate limit reached for {key.name!r} on concurrent requests: limit {limits.concurrent_requests}. "
                "Retry when one of them has finished.",
                kind="requests",
                retry_after=1.0,
            )
        else:
            # Both waits: Retry-After must cover the later one, or the retry is refused again.
            for_requests = client.requests.wait_s(1, now) if client.requests else 0.0
            for_tokens = client.tokens.wait_s(reserve, now) if client.tokens else 0.0
            if for_requests > 0 and for_requests >= for_tokens:
                refusal = RateLimited(
                    f"Rate limit reached for {key.name!r} on requests per min (RPM): limit "
                    f"{limits.requests_per_minute}. Please try again in {duration(for_requests)}.",
                    kind="requests",
                    retry_after=for_requests,
                )
            elif for_tokens > 0:
                refusal = RateLimited(
                    f"Rate limit reached for {key.name!r} on tokens per min (TPM): limit {limits.tokens_per_minute}, "
                    f"requested {reserve}. Please try again in {duration(for_tokens)}.",
                    kind="tokens",
                    retry_after=for_tokens,
                )
        if refusal is None:
            client.active += 1
            if client.requests:
                client.requests.add(-1, now)
            if client.tokens:
                client.tokens.add(-reserve, now)
        headers = _headers(client, limits)
        if refusal is not None:
            refusal.headers = headers
            raise refusal
        return reserve, headers

    def settle(self, name: str, reserved: int, used: int) -> None:
        """The request admitted with ``reserved`` tokens has ended having used ``used``."""
        client = self._clients.get(name)
        if client is None:
            return
        client.active = max(0, client.active - 1)
        if client.tokens:
            client.tokens.add(reserved - used, self._clock())

    def _sync(self, name: str, limits: KeyLimits, now: float) -> _Client:
        client = self._clients.setdefault(name, _Client())
        client.requests = _bucket(client.requests, limits.requests_per_minute, now)
        client.tokens = _bucket(client.tokens, limits.tokens_per_minute, now)
        return client


def _bucket(bucket: TokenBucket | None, per_minute: int | None, now: float) -> TokenBucket | None:
    if per_minute is None:
        return None
    if bucket is None:
        return TokenBucket(per_minute, now)
    if bucket.capacity != per_minute:
        bucket.resize(per_minute, now)
    return bucket


def _headers(client: _Client, limits: KeyLimits) -> Headers:
    headers: Headers = []
    for kind, bucket, limit in (
        ("requests", client.requests, limits.requests_per_minute),
        ("tokens", client.tokens, limits.tokens_per_minute),
    ):
        if bucket is not None and limit is not None:
            headers += [
                (f"x-ratelimit-limit-{kind}", str(limit)),
                (f"x-ratelimit-remaining-{kind}", str(bucket.remaining())),
                (f"x-ratelimit-reset-{kind}", duration(bucket.reset_s())),
            ]
    return headers
