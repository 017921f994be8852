"""How a turn's events reach a response: with keep-alives while nothing happens, and ended
on llmux's own terms at the end of the shutdown grace.

On SIGTERM uvicorn gives in-flight requests ``--grace`` seconds and then cancels them: a stream
cut that way ends without a terminal event (no ``[DONE]``, no ``response.failed``), and a
non-streamed request loses its connection. So each turn races its next event against the
``Cutoff``, which fires a margin before uvicorn would cancel: the turn stops its engine and
raises a 503 ``shutting_down``, which the stream encodes as its in-band error and proper end
(chat: an error event, the finish chunk, ``[DONE]``; Responses: ``response.failed``) and a
non-streamed request returns as its status.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

import anyio

from llmux.protocol.errors import ServiceUnavailable

T = TypeVar("T")


def margin_s(grace_s: float) -> float:
    """How long before the grace ends a turn is cut: time for its last bytes to go out."""
    return min(1.0, grace_s / 4)


class Cutoff:
    """Fires ``grace_s - margin_s(grace_s)`` after ``stopping`` is set."""

    def __init__(self, stopping: asyncio.Event, grace_s: float) -> None:
        self.stopping = stopping
        self.after_s = max(0.0, grace_s - margin_s(grace_s))

    async def wait(self) -> None:
        await self.stopping.wait()
        await asyncio.sleep(self.after_s)


async def paced(
    events: AsyncIterator[T], interval: float, cutoff: Cutoff | None = None
) -> AsyncGenerator[T | None, None]:
    """``events``, with a None whenever ``interval`` seconds pass without one (a keep-alive is
    due). Each step runs as a task so the wait can time out without cancelling the step; at the
    cutoff a 503 is raised. However the generator ends (the cutoff, or the client leaving
    mid-step), a pending step is cancelled *and waited for*, shielded (Litestar cancels through
    anyio, where every later await is cancelled again): its cleanup stops the engine, or leaves an
    upstream connection idle enough to be closed rather than left generating for nobody."""
    step: asyncio.Future[T] | None = None
    ending = asyncio.ensure_future(cutoff.wait()) if cutoff is not None else None
    try:
        while True:
            step = asyncio.ensure_future(anext(events))
            while not step.done():
                waiting = {step} if ending is None else {step, ending}
                await asyncio.wait(waiting, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                if ending is not None and ending.done() and not step.done():
                    raise ServiceUnavailable(
                        "llmux is shutting down: this answer was ended at the end of the shutdown grace.",
                        code="shutting_down",
                    )
                if not step.done():
                    yield None
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if ending is not None:
            ending.cancel()
        if step is not None and not step.done():
            step.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({step})
