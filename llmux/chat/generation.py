"""The generation loop both runtimes share: text pieces in, chat events out.

A runtime renders the prompt, starts generating, and hands over an iterator of decoded text
pieces, one per generated token (``None`` for the end-of-generation token, after which it
stops). This loop applies ``stop`` strings, feeds the family parser, checks ``cancel`` after
every token, counts usage, and ends with exactly one ``Finish``. Closing the iterator (which
happens on every exit path) is how the runtime learns to stop generating.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator, Sequence

import structlog

from llmux.backends.base import ChatEvent, Finish, FinishReason, Usage
from llmux.chat.parsers import OutputParser
from llmux.chat.stops import StopScanner
from llmux.errors import InvalidRequest

log = structlog.get_logger("llmux.chat")


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


def run(
    pieces: Generator[str | None, None, None],
    *,
    parser: OutputParser,
    stops: tuple[str, ...],
    prompt_tokens: int,
    max_tokens: int,
    cancel: threading.Event,
    model: str,
    preamble: Sequence[ChatEvent] = (),
) -> Iterator[ChatEvent]:
    """``preamble``: events the parser made from text pre-filled into the prompt (a forced
    tool call's start); they go out first."""
    stats = _Stats()
    scanner = StopScanner(stops)
    try:
        try:
            yield from preamble
            for piece in pieces:
                stats.token()
                if piece is None:
                    stats.eos = True
                    break
                yield from parser.feed(scanner.feed(piece))
                if scanner.hit or cancel.is_set() or stats.produced >= max_tokens:
                    break
        finally:
            pieces.close()  # stops the runtime's generation on every path, including our own close
        yield from parser.feed(scanner.drain())
        yield from parser.close()
        stats.reason = _reason(parser.calls, eos=stats.eos, stopped=scanner.hit or cancel.is_set(),
                               produced=stats.produced, limit=max_tokens)
        yield Finish(stats.reason, Usage(prompt_tokens=prompt_tokens, completion_tokens=stats.produced))
    finally:
        # Also when the consumer closes us early (a cancelled request stops reading).
        stats.log(model, prompt_tokens, cancelled=cancel.is_set())


class _Stats:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self.produced = 0
        self.eos = False
        self.reason: FinishReason | None = None

    def token(self) -> None:
        self.produced += 1
        if self.first is None:
            self.first = time.perf_counter()

    def log(self, model: str, prompt_tokens: int, *, cancelled: bool) -> None:
        elapsed = time.perf_counter() - self.started
        log.info(
            "chat.generated",
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=self.produced,
            finish_reason=self.reason,
            cancelled=cancelled,
            ttft_ms=round(((self.first or time.perf_counter()) - self.started) * 1000, 1),
            seconds=round(elapsed, 3),
            tokens_per_s=round(self.produced / elapsed, 1) if elapsed > 0 else None,
        )


def _reason(calls: int, *, eos: bool, stopped: bool, produced: int, limit: int) -> FinishReason:
    if calls:
        return "tool_calls"
    if not eos and not stopped and produced >= limit:
        return "length"
    return "stop"
