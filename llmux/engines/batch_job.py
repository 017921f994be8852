"""One job submitted to a batching engine's decode thread, as the ``Generation`` it hands back.

Shared by both batching engines (``llamacpp_batch``, ``transformers_batch``): iterating
``batches()`` queues the job with its decoder; leaving early withdraws it (a waiting job never
runs; a running one is dropped after the decoder's current step). ``stopped`` resolves once the
decode thread no longer works for it, so the lease is held until then.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Protocol

from llmux.engines.admission import Admission
from llmux.engines.base import TextJob
from llmux.engines.text import Generation, Item
from llmux.engines.worker import Channel


class Decoder(Protocol):
    def enqueue(self, job: QueuedJob) -> None: ...

    def withdraw(self, job: QueuedJob) -> None: ...


class QueuedJob:
    """One submitted job and the channel its pieces go through."""

    def __init__(self, decoder: Decoder, job: TextJob) -> None:
        self.decoder = decoder
        self.job = job
        self.channel: Channel[Item] = Channel()
        self.tokens: list[int] | None = None
        """The prompt's token ids, once the decoder has tokenized it."""

    @property
    def stopped(self) -> asyncio.Future[None]:
        return self.channel.stopped

    async def batches(self) -> AsyncGenerator[list[Item], None]:
        self.channel.open()
        try:
            self.decoder.enqueue(self)
        except BaseException:
            self.channel.finish()  # never queued: nothing will work on it
            raise
        try:
            async for batch in self.channel.batches():
                yield batch
        finally:
            self.decoder.withdraw(self)


class DecodeThread:
    """The event-loop side both batching decoders share: jobs are admitted in arrival order under
    ``_lock`` (an image job, or one ``runs_alone`` names, runs alone), a withdrawn waiting job never runs, and ``close`` wakes
    the decode thread (``_run``, the subclass's) to end every job and joins it. A subclass sets up
    its own state, then calls ``_start``."""

    def __init__(self, name: str, slots: int) -> None:
        self._name = name
        self._admission: Admission[QueuedJob] = Admission(slots, exclusive=lambda j: self.runs_alone(j.job))
        self._lock = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"decode-{name}", daemon=True)

    def _start(self) -> None:
        self._thread.start()

    def _serially(self, job: QueuedJob, serial: Callable[[TextJob, threading.Event], Iterator[Item]]) -> None:
        """``job`` through the engine's serial path (on the decode thread, the model to itself):
        its pieces handed on until it ends or its consumer leaves; the generator is closed
        either way, so its own cleanup runs."""
        items = None
        try:
            items = serial(job.job, job.channel.cancel)
            for item in items:
                if job.channel.cancel.is_set():
                    break
                job.channel.put(item)
            job.channel.end()
        except Exception as exc:
            job.channel.fail(exc)
        finally:
            if items is not None:
                items.close()  # type: ignore[attr-defined]  # a generator

    def _end(self, job: QueuedJob, slot: int) -> None:
        """``job`` is done with its slot: the slot is free for the next, the consumer told."""
        with self._lock:
            self._admission.finish(slot)
        job.channel.finish()

    def runs_alone(self, job: TextJob) -> bool:
        """Whether ``job`` takes the serial path with the model to itself: an image prompt here;
        a decoder adds what its batched sampling cannot do."""
        return bool(job.images)

    def _run(self) -> None:
        raise NotImplementedError

    def submit(self, job: TextJob) -> Generation:
        return QueuedJob(self, job)

    def enqueue(self, job: QueuedJob) -> None:
        with self._lock:
            if self._closing:
                raise RuntimeError(f"{self._name} is unloading")
            self._admission.submit(job)
            self._lock.notify()

    def withdraw(self, job: QueuedJob) -> None:
        """The consumer left: a waiting job never runs; a running one ends after this step."""
        with self._lock:
            if self._admission.withdraw(job):
                job.channel.finish()

    def occupancy(self) -> tuple[int, int]:
        """(sequences running, sequences waiting for a slot)."""
        with self._lock:
            return self._admission.running, self._admission.waiting

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join()
