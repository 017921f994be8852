"""One job submitted to a batching engine's decode thread, as the ``Generation`` it hands back.

Shared by both batching engines (``llamacpp_batch``, ``transformers_batch``): iterating
``batches()`` queues the job with its decoder; leaving early withdraws it (a waiting job never
runs; a running one is dropped after the decoder's current step). ``stopped`` resolves once the
decode thread no longer works for it, so the lease is held until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Protocol

from llmux.engines.base import TextJob
from llmux.engines.text import Item
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
