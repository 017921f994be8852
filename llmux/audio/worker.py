"""Blocking inference in a worker thread, cancellable, never abandoned.

A request that goes away sets the ``cancel`` flag the backend checks between steps; the caller
still waits for the thread to stop before it returns, so the lease (and with it the model) is
held until no thread touches the backend any more.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


async def run_cancellable(work: Callable[[threading.Event], T]) -> T:
    """``work(cancel)`` in a worker thread; on cancellation set the flag and wait for it."""
    cancel = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(work, cancel))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancel.set()
        await asyncio.wait({task})
        raise


async def iterate_in_thread(produce: Callable[[threading.Event], Iterator[T]]) -> AsyncIterator[T]:
    """Items of ``produce(cancel)`` computed in one worker thread, handed over as they come.

    The thread runs ahead by at most a few items (a bounded queue), so a slow client does not
    make the server buffer a whole long synthesis."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=4)
    cancel = threading.Event()

    def put(item: object) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def run() -> None:
        try:
            for item in produce(cancel):
                if cancel.is_set():
                    break
                put(item)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
            return
        put(_END)

    thread = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        cancel.set()
        while not thread.done():  # unblock a producer waiting on a full queue
            while not queue.empty():
                queue.get_nowait()
            await asyncio.wait({thread}, timeout=0.05)
