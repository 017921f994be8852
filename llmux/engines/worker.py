"""The one bridge between blocking inference threads and the event loop.

Inference is blocking (torch, llama.cpp, CTranslate2, onnxruntime), so it runs in a worker
thread and the event loop only moves its results. ``ThreadStream`` is that hand-over, for chat
tokens and audio chunks alike:

- the producer runs in its own thread with a copy of the caller's ``contextvars``, so every
  log line it writes carries the request's ``request_id``;
- the loop is woken at most once per batch of items, not once per item (tokens come fast);
- with ``maxsize`` the producer blocks while that many items wait, so a slow client does not
  make the server buffer a whole long synthesis;
- a consumer that stops early sets the ``cancel`` flag, which the producer checks between
  steps, and ``stopped`` resolves only when the thread has returned: whoever holds a lease for
  the work keeps it until then, so a model is never unloaded under a running thread.

``Channel`` is the same hand-over without a thread of its own: a batching engine's one decode
thread feeds many channels, one per sequence, and finishes each when it drops the sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class _End:
    """Marks the end of the producer's items."""


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Channel(Generic[T]):
    """Items put by a producer thread, taken as batches on the loop.

    The producer is whoever calls ``put``/``end``/``fail`` and, once it no longer works for
    this channel, ``finish`` (which resolves ``stopped``): a thread of its own
    (``ThreadStream``) or one shared by many channels (a batching engine's decode thread).
    """

    def __init__(self, *, maxsize: int = 0) -> None:
        self._maxsize = maxsize
        self.cancel = threading.Event()
        self._items: deque[T | _End | _Failed] = deque()
        self._room = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._wake_pending = False
        self._stopped: asyncio.Future[None] | None = None

    @property
    def stopped(self) -> asyncio.Future[None]:
        """Resolves once no producer works for this channel (at once if none ever did)."""
        if self._stopped is None:
            self._stopped = asyncio.get_running_loop().create_future()
            self._stopped.set_result(None)
        return self._stopped

    @property
    def opened(self) -> bool:
        return self._loop is not None

    def open(self) -> None:
        """Bind to the running loop, before any producer puts."""
        loop = self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._stopped = loop.create_future()

    # ---- producer thread ----------------------------------------------------------------------

    def put(self, item: T) -> None:
        self._put(item)

    def end(self) -> None:
        self._put(_End())

    def fail(self, error: BaseException) -> None:
        self._put(_Failed(error))

    def _put(self, item: T | _End | _Failed) -> None:
        with self._room:
            if self._maxsize and not isinstance(item, (_End, _Failed)):
                self._room.wait_for(lambda: len(self._items) < self._maxsize or self.cancel.is_set())
            self._items.append(item)
            if self._wake_pending:
                return
            self._wake_pending = True
        assert self._loop is not None and self._ready is not None
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits any more
            self._loop.call_soon_threadsafe(self._ready.set)

    def finish(self) -> None:
        """The producer no longer works for this channel (callable from any thread)."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits any more
            self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    # ---- event loop ---------------------------------------------------------------------------

    def _begin(self) -> None:
        self.open()

    async def batches(self) -> AsyncIterator[list[T]]:
        """Items in order, in batches; raises what the producer failed with. Leaving early
        (break, cancellation, an error) sets ``cancel``."""
        if self._loop is None:
            self._begin()
        assert self._ready is not None
        try:
            while True:
                await self._ready.wait()
                with self._room:
                    self._ready.clear()
                    self._wake_pending = False
                    taken = list(self._items)
                    self._items.clear()
                    self._room.notify_all()
                batch: list[T] = []
                for item in taken:
                    if isinstance(item, _End):
                        if batch:
                            yield batch
                        return
                    if isinstance(item, _Failed):
                        if batch:
                            yield batch
                        raise item.error
                    batch.append(item)
                if batch:
                    yield batch
        finally:
            self.close()

    def close(self) -> None:
        """Ask the producer to stop (it checks ``cancel`` between steps) and unblock it."""
        self.cancel.set()
        with self._room:
            self._room.notify_all()


class ThreadStream(Channel[T]):
    """The items of ``produce(cancel)``, made in a worker thread of its own, as batches on the loop."""

    def __init__(
        self, produce: Callable[[threading.Event], Iterator[T]], *, maxsize: int = 0, name: str = "worker"
    ) -> None:
        super().__init__(maxsize=maxsize)
        self._produce = produce
        self._name = name

    def start(self) -> None:
        self.open()
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._run,), name=self._name, daemon=True).start()

    def _begin(self) -> None:
        self.start()

    def _run(self) -> None:
        items: Iterator[T] | None = None
        try:
            items = self._produce(self.cancel)
            for item in items:
                if self.cancel.is_set():
                    break
                self.put(item)
            self.end()
        except BaseException as exc:  # handed to the consumer, raised there
            self.fail(exc)
        finally:
            close = getattr(items, "close", None)  # None too when produce() itself raised
            if close is not None:
                close()  # a generator's finally stops the runtime's own work
            self.finish()


async def run_in_thread(work: Callable[[threading.Event], T], *, name: str = "worker") -> T:
    """``work(cancel)`` in a worker thread. Cancelling the caller sets ``cancel`` and still waits
    for the thread to return, so nothing keeps running on a model after its lease is gone."""
    stream: ThreadStream[T] = ThreadStream(lambda cancel: iter((work(cancel),)), name=name)
    try:
        async for batch in stream.batches():
            return batch[0]
        raise RuntimeError("the worker returned nothing")  # unreachable: one item always comes
    finally:
        stream.close()
        if not stream.stopped.done():
            await _wait_through_cancellation(stream.stopped)


async def _wait_through_cancellation(done: asyncio.Future[None]) -> None:
    """Wait for ``done`` even while the caller is being cancelled, then re-raise the cancel."""
    cancelled = False
    while not done.done():
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
