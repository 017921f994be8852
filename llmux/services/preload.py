"""``preload:`` in models.yaml: load models at start-up, without holding the server's start.

The server answers from the first moment; the preload runs as a background task, one model at a
time in the registry's order (the reverse of ``eviction_order``: ASR, TTS, embedding by default,
then LLM — what the eviction rules protect most goes first, so a later preload never pushes out an
earlier one). Requests that arrive meanwhile queue like any
other (a request for the model being preloaded waits for that load). A model is preloaded only
while it fits beside what is resident without evicting anything (the planner decides, on
measured footprints once known); a load that fails is logged and the server stays up (the model
is then broken for its backoff, exactly as if a request had failed to load it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog

from llmux.protocol.errors import LlmuxError
from llmux.registry import Registry
from llmux.residency import planner
from llmux.residency.controller import ResidencyController

log = structlog.get_logger("llmux.preload")


def _evictions(controller: ResidencyController, model_id: str) -> str | None:
    """Why ``model_id`` cannot be preloaded now (what it would evict, or why it cannot fit)."""
    decision = controller.plan_for(model_id)
    if isinstance(decision, planner.Infeasible):
        return decision.message
    if decision.evict:
        return f"it would evict {', '.join(decision.evict)}"
    return None


async def preload(controller: ResidencyController, registry: Registry) -> None:
    """Load ``registry.preload`` in order; never raises for a model that cannot be loaded."""
    started = time.monotonic()
    loaded: list[str] = []
    for model_id in registry.preload:
        if controller.closing:
            return
        reason = _evictions(controller, model_id)
        if reason is not None:
            log.warning("preload.skipped", model=model_id, reason=reason)
            continue
        try:
            await controller.load(model_id)
        except Exception as exc:  # a preload that fails must leave the server up
            message = exc.message if isinstance(exc, LlmuxError) else repr(exc)
            log.error("preload.failed", model=model_id, error=message)
            continue
        loaded.append(model_id)
    log.info("preload.done", loaded=loaded, duration_s=round(time.monotonic() - started, 3))


def preloader(
    controller: ResidencyController, registry: Registry
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A Litestar lifespan: ``preload`` runs beside the server from start-up; on shutdown it is
    cancelled (a load it started finishes inside the controller's own shutdown)."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(preload(controller, registry)) if registry.preload else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    return lifespan
