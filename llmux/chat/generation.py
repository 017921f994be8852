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
from collections.abc import Generator, Iterator

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
) -> Iterator[ChatEvent]:
    started = time.perf_counter()
    first: float | None = None
    scanner = StopScanner(stops)
    produced = 0
    eos = False
    try:
        for piece in pieces:
            produced += 1
            if first is None:
                first = time.perf_counter()
            if piece is None:
                eos = True
                break
            yield from parser.feed(scanner.feed(piece))
            if scanner.hit or cancel.is_set() or produced >= max_tokens:
                break
    finally:
        pieces.close()  # stops the runtime's generation on every path, including our own close
    yield from parser.feed(scanner.drain())
    yield from parser.close()
    reason = _reason(parser.calls, eos=eos, stopped=scanner.hit or cancel.is_set(), produced=produced, limit=max_tokens)
    yield Finish(reason, Usage(prompt_tokens=prompt_tokens, completion_tokens=produced))
    elapsed = time.perf_counter() - started
    log.info(
        "chat.generated",
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=produced,
        finish_reason=reason,
        cancelled=cancel.is_set(),
        ttft_ms=round(((first or time.perf_counter()) - started) * 1000, 1),
        seconds=round(elapsed, 3),
        tokens_per_s=round(produced / elapsed, 1) if elapsed > 0 else None,
    )


def _reason(calls: int, *, eos: bool, stopped: bool, produced: int, limit: int) -> FinishReason:
    if calls:
        return "tool_calls"
    if not eos and not stopped and produced >= limit:
        return "length"
    return "stop"
