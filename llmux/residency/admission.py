"""Admission control: how many requests may be running or waiting, per model and in all.

A bounded queue turns overload into a fast, honest 429 with ``Retry-After`` instead of requests
that wait for minutes (and clients that time out with their work still queued); shutting down
is a 503. Counted: leases held (running, or waiting for the engine's turn) and waiters queued
for a load or a swap.
"""

from __future__ import annotations

from llmux.protocol.errors import ServiceUnavailable, TooManyRequests
from llmux.residency.slots import Slot

RETRY_S = 2.0


def check(slot: Slot, for_model: int, in_all: int, max_in_all: int, *, closing: bool) -> None:
    if closing:
        raise ServiceUnavailable("llmux is shutting down", code="shutting_down", retry_after=5)
    if for_model >= slot.spec.max_queue:
        raise TooManyRequests(
            f"{for_model} requests for model {slot.id!r} are running or waiting "
            f"(its max_queue is {slot.spec.max_queue}); retry later.",
            retry_after=RETRY_S,
        )
    if in_all >= max_in_all:
        raise TooManyRequests(
            f"{in_all} requests are running or waiting (limits.max_queue is {max_in_all}); retry later.",
            retry_after=RETRY_S,
        )
