"""The text-engine seam: ``submit(job)`` gives an asynchronous stream of token pieces.

The chat pipeline (``chat.pipeline``) renders the prompt, submits a ``TextJob`` and parses the
pieces; an engine only tokenizes and generates. How many jobs an engine runs at once is the
engine's business, behind ``submit``: ``SerialTextEngine`` runs one generation at a time in
arrival order (the runtimes here); a batching engine interleaves many jobs in one forward pass
and hands each its own ``Generation`` — nothing above this seam changes.

A generation yields, in batches: one ``Prompted`` (the prompt's token count and the completion
budget the context leaves), then one text piece per generated token (a ``LoggedPiece`` with its
log probability when the job asks for ``logprobs``; ``None`` for the end-of-generation token,
after which it stops).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Iterator
from typing import Protocol, runtime_checkable

from llmux.engines.base import ChatTemplate, Engine, LoggedPiece, Prompted, TextJob
from llmux.engines.worker import ThreadStream
from llmux.protocol.errors import InvalidRequest

Piece = str | LoggedPiece | None
Item = Prompted | Piece


class Generation(Protocol):
    """One submitted job. Iterate ``batches()`` (leaving early cancels the job); ``stopped``
    resolves once the engine no longer works on it — a lease is held until then."""

    def batches(self) -> AsyncGenerator[list[Item], None]: ...

    @property
    def stopped(self) -> asyncio.Future[None]: ...


@runtime_checkable
class TextEngine(Engine, Protocol):
    def template(self) -> ChatTemplate:
        """How the loaded model's prompts are rendered."""
        ...

    def submit(self, job: TextJob) -> Generation:
        """Queue ``job``; its pieces flow once the engine takes it up."""
        ...


def completion_budget(requested: int | None, prompt_tokens: int, context: int) -> int:
    """``max_tokens`` capped to what the context leaves (OpenCode asks for 32,000 whatever the
    model): a request is refused only when the prompt alone does not fit."""
    room = context - prompt_tokens
    if room < 1:
        raise InvalidRequest(
            f"The prompt is {prompt_tokens} tokens; this model's context holds {context}.",
            param="messages",
            code="context_length_exceeded",
        )
    return room if requested is None else max(1, min(requested, room))


class SerialTextEngine:
    """Base of engines that generate one job at a time: jobs take turns in arrival order (an
    ``asyncio.Lock`` is FIFO) and each runs ``generate`` in a worker thread.

    A job whose consumer leaves while it waits for its turn never runs; one that leaves while
    generating has its ``cancel`` flag set, which ``generate`` sees between tokens, and keeps
    the turn until its thread has stopped.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._turns: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._running = 0
        self._waiting = 0

    def occupancy(self) -> tuple[int, int]:
        """(jobs generating now, jobs waiting for their turn): ``/health`` shows both."""
        return self._running, self._waiting

    def _turn(self) -> asyncio.Lock:
        """The FIFO of this engine's jobs, on the running loop (tests reuse a loaded engine
        across event loops; a lock is bound to the first loop it waits on)."""
        loop = asyncio.get_running_loop()
        if self._turns is None or self._turns[0] is not loop:
            self._turns = (loop, asyncio.Lock())
        return self._turns[1]

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        """Blocking: evaluate the prompt, yield ``Prompted``, then one piece per token."""
        raise NotImplementedError

    def submit(self, job: TextJob) -> Generation:
        return _SerialGeneration(self, job)


class _SerialGeneration:
    def __init__(self, engine: SerialTextEngine, job: TextJob) -> None:
        self._engine = engine
        self._stream: ThreadStream[Item] = ThreadStream(
            lambda cancel: engine.generate(job, cancel), name=f"generate-{engine.name}"
        )

    @property
    def stopped(self) -> asyncio.Future[None]:
        return self._stream.stopped

    def _done(self, turn: asyncio.Lock) -> None:
        self._engine._running -= 1
        turn.release()

    async def batches(self) -> AsyncGenerator[list[Item], None]:
        engine = self._engine
        turn = engine._turn()
        engine._waiting += 1
        try:
            await turn.acquire()
        finally:
            engine._waiting -= 1
        try:
            self._stream.start()
        except BaseException:
            turn.release()
            raise
        engine._running += 1
        # The turn passes on when the thread has stopped, not when the consumer leaves.
        self._stream.stopped.add_done_callback(lambda _: self._done(turn))
        async for batch in self._stream.batches():
            yield batch
