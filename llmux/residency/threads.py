"""Blocking residency work (loads, unloads) in a thread of its own.

Not the default executor: its threads are joined when the interpreter exits, so one load that
never returns would keep a SIGTERMed server alive forever, and a few slow ones would starve every
other ``to_thread`` caller. A daemon thread per call costs nothing next to a model load, and a
caller that stops waiting (a load timeout, shutdown) leaves it behind without blocking anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any


async def in_daemon_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a new daemon thread; cancelling the caller abandons the thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()  # the thread's log lines keep the caller's request id

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # the caller stopped waiting
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def run() -> None:
        try:
            result, error = context.run(fn, *args), None
        except BaseException as exc:  # raised in the caller
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    name = getattr(fn, "__qualname__", "residency")
    threading.Thread(target=run, name=f"residency-{name}", daemon=True).start()
    return await future
