"""One chat turn on a text engine: render, submit, parse — the same code for every runtime.

The engine yields text pieces, one per token; this applies ``stop`` strings, feeds the family
parser, counts usage against the budget the engine reported, and ends with exactly one
``Finish``. Leaving the event stream early (a client that goes away) closes the engine's
generation, which stops within a token; ``stopped`` tells when it has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import structlog

from llmux.chat.events import ChatEvent, ChatJob, Finish, FinishReason, Logprobs, ReasoningDelta, Usage
from llmux.chat.prompt import render_prompt
from llmux.chat.stops import StopScanner
from llmux.engines.base import LoggedPiece, Prompted, TextJob, TokenLogprob
from llmux.engines.text import TextEngine

log = structlog.get_logger("llmux.chat")


class ChatRun:
    """Renders at once (a template that refuses the conversation raises here); generates when
    ``events()`` is iterated."""

    def __init__(self, engine: TextEngine, family: str | None, job: ChatJob) -> None:
        self._rendered = render_prompt(job, family, engine.template())
        log.debug("chat.rendered", prompt=self._rendered.prompt, images=len(job.images))
        self._stops = job.params.stop
        self._generation = engine.submit(TextJob(prompt=self._rendered.prompt, images=job.images, params=job.params))
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        self._reasoning = False
        self.first_token_at: float | None = None
        """``time.perf_counter()`` when the first generated token arrived."""
        self.finished: Finish | None = None

    @property
    def stopped(self) -> asyncio.Future[None]:
        """Resolves once the engine no longer works on this turn (hold the lease until then)."""
        return self._generation.stopped

    async def events(self) -> AsyncIterator[list[ChatEvent]]:
        parser, scanner = self._rendered.parser, StopScanner(self._stops)
        budget, eos = 0, False
        # Logprobs of tokens whose text the parser still holds: sent after the events that release it.
        logprobs: list[TokenLogprob] = []
        batches = self._generation.batches()
        try:
            if self._rendered.preamble:
                yield list(self._rendered.preamble)
            async for batch in batches:
                out: list[ChatEvent] = []
                done = False
                for item in batch:
                    if isinstance(item, Prompted):
                        self.prompt_tokens, budget = item.prompt_tokens, item.max_tokens
                        self.cached_tokens = item.cached_tokens
                        continue
                    self._count()
                    if item is None:
                        done = eos = True
                        break
                    if isinstance(item, LoggedPiece):
                        logprobs.append(item.logprob)
                        item = item.text
                    events = parser.feed(scanner.feed(item))
                    self._count_reasoning(events)
                    out.extend(events)
                    if events and logprobs:
                        out.append(Logprobs(tuple(logprobs)))
                        logprobs = []
                    if scanner.hit or self.completion_tokens >= budget:
                        done = True
                        break
                if out:
                    yield out
                if done:
                    break
        finally:
            await batches.aclose()  # stops the engine's generation on every path
        tail: list[ChatEvent] = [*parser.feed(scanner.drain()), *parser.close()]
        if logprobs:
            tail.append(Logprobs(tuple(logprobs)))
        reason = _reason(parser.calls, eos=eos, stopped=scanner.hit, produced=self.completion_tokens, limit=budget)
        self.finished = Finish(reason, self.usage())
        yield [*tail, self.finished]

    def usage(self) -> Usage:
        """What the turn has used so far (all of it once finished)."""
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            reasoning_tokens=self.reasoning_tokens,
            cached_tokens=self.cached_tokens,
        )

    def _count_reasoning(self, events: list[ChatEvent]) -> None:
        """A token is a reasoning token while the parser is in reasoning: one that released
        reasoning text, or one that released nothing (held back, a marker) after reasoning."""
        if events:
            self._reasoning = isinstance(events[-1], ReasoningDelta)
            if not self._reasoning and any(isinstance(e, ReasoningDelta) for e in events):
                self.reasoning_tokens += 1  # the token that ended the reasoning
                return
        if self._reasoning:
            self.reasoning_tokens += 1

    def _count(self) -> None:
        self.completion_tokens += 1
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()


def _reason(calls: int, *, eos: bool, stopped: bool, produced: int, limit: int) -> FinishReason:
    if calls:
        return "tool_calls"
    if not eos and not stopped and produced >= limit:
        return "length"
    return "stop"
