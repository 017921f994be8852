"""The one bridge between inference threads and the event loop (``engines.worker``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import structlog

from llmux.engines.worker import ThreadStream, run_in_thread


async def test_the_worker_thread_sees_the_request_context() -> None:
    """Log lines written during generation carry the request's id (contextvars are carried)."""
    structlog.contextvars.bind_contextvars(request_id="abc123")
    try:
        seen = await run_in_thread(lambda _: structlog.contextvars.get_contextvars().get("request_id"))
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    assert seen == "abc123"


async def test_items_arrive_in_order_and_errors_after_them() -> None:
    def produce(cancel: threading.Event) -> Iterator[int]:
        yield from range(5)
        raise ValueError("boom")

    got: list[int] = []
    with pytest.raises(ValueError, match="boom"):
        async for batch in ThreadStream(produce).batches():
            got.extend(batch)
    assert got == [0, 1, 2, 3, 4]


async def test_a_bounded_stream_never_runs_far_ahead_of_its_reader() -> None:
    made: list[int] = []

    def produce(cancel: threading.Event) -> Iterator[int]:
        for i in range(100):
            made.append(i)
            yield i

    stream: ThreadStream[int] = ThreadStream(produce, maxsize=4)
    batches = stream.batches()
    first = await anext(batches)
    await asyncio.sleep(0.05)  # give the producer every chance to run ahead
    assert len(made) <= len(first) + 4 + 1  # the queue's bound, plus the item it is blocked on
    await batches.aclose()
    await stream.stopped
    assert stream.cancel.is_set() and len(made) < 100


async def test_leaving_early_cancels_and_stopped_waits_for_the_thread() -> None:
    release = threading.Event()
    finished = threading.Event()

    def produce(cancel: threading.Event) -> Iterator[int]:
        try:
            yield 1
            release.wait(5)  # a step that does not look at cancel
            yield 2
        finally:
            finished.set()

    stream: ThreadStream[int] = ThreadStream(produce)
    batches = stream.batches()
    assert await anext(batches) == [1]
    await batches.aclose()
    assert stream.cancel.is_set()
    assert not stream.stopped.done(), "stopped before the thread left its step"
    release.set()
    await asyncio.wait_for(stream.stopped, 5)
    assert finished.is_set()


async def test_a_cancelled_caller_still_waits_for_its_thread() -> None:
    inside = threading.Event()
    release = threading.Event()
    done = threading.Event()

    def work(cancel: threading.Event) -> int:
        inside.set()
        release.wait(5)
        done.set()
        return 1

    task = asyncio.ensure_future(run_in_thread(work))
    while not inside.is_set():
        await asyncio.sleep(0.001)
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done(), "the caller returned while its thread still runs"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()
