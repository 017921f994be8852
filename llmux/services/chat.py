"""Chat completions: validate everything, lease the physical model, run one chat turn, encode.

1. ``prepare`` resolves the model and checks the request against its capabilities, and
   fetches and decodes every image — all before a lease, so a bad request never loads or
   swaps a model (and is a 400 even with ``stream: true``).
2. The lease is held until the engine has really stopped working on the turn (a cancelled
   stream's generation thread may still be inside a step): a model is never evicted under a
   running generation.
3. What the turn did (tokens, time to first token, how it ended) goes into the request's
   canonical line (``services.record``), on every exit path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import msgspec
import structlog

from llmux.chat.behaviour import with_effort
from llmux.chat.events import ChatEvent, ChatJob
from llmux.chat.fetch import networks
from llmux.chat.images import ImagePolicy, check_url, image_bytes
from llmux.chat.messages import image_parts
from llmux.chat.pipeline import ChatRun
from llmux.chat.sampling import sampling_params
from llmux.chat.stream import ChunkEncoder, CompletionBuilder
from llmux.chat.tool_choice import forced_name
from llmux.engines.worker import run_in_thread
from llmux.protocol.chat import ChatCompletion, ChatCompletionRequest
from llmux.protocol.errors import InvalidRequest, LlmuxError, error_body
from llmux.protocol.sse import DONE, KEEPALIVE, sse
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.residency.controller import ResidencyController
from llmux.residency.slots import Lease
from llmux.services.access import admit
from llmux.services.limits import check_chat
from llmux.services.pacing import Cutoff, paced
from llmux.services.ratelimit import DEFAULT_COMPLETION_RESERVE
from llmux.services.record import note

log = structlog.get_logger("llmux.chat")
T = TypeVar("T")


class GenerationFailed(LlmuxError):
    status = 500
    type = "server_error"
    code = "generation_failed"


@dataclass(frozen=True, slots=True)
class PreparedChat:
    """A validated request: the virtual name it used, its physical model, and the job."""

    model: str
    """The virtual model name, as the client sent it (and as the response names it)."""
    physical: PhysicalModel
    job: ChatJob
    stream: bool
    include_usage: bool


class ChatService:
    def __init__(
        self,
        registry: Registry,
        controller: ResidencyController,
        *,
        keepalive_s: float = 5.0,
        shutdown_grace_s: float = 30.0,
    ) -> None:
        self.registry = registry
        self.controller = controller
        self.keepalive_s = keepalive_s
        self.cutoff = Cutoff(controller.stopping, shutdown_grace_s)
        self.images = ImagePolicy(
            remote=registry.limits.remote_images,
            allow=networks(registry.limits.remote_images_allow),
            timeout_s=registry.limits.remote_image_timeout_s,
            max_bytes=int(registry.limits.max_request_mb * 2**20),
            max_pixels=registry.limits.max_image_pixels,
        )

    # ---- 1. validation, before any lease -------------------------------------------------------

    async def prepare(self, request: ChatCompletionRequest) -> PreparedChat:
        admit(request.model, tokens=reservation(request))  # the key's models and limits: 404/429
        virtual, physical = self.registry.resolve(request.model, expect=ModelType.LLM)
        note(model=request.model, physical=physical.id, stream=request.stream)
        check_chat(request, self.registry.limits)
        behaviour = with_effort(physical.family, virtual.behaviour, request.reasoning_effort, request.model)
        self.controller.admit(physical.id)  # a 429 is decided before a stream's headers
        images = image_parts(request.messages)
        if len(images) > self.registry.limits.max_images:
            raise InvalidRequest(
                f"The request has {len(images)} images; at most {self.registry.limits.max_images}.",
                param="messages",
                code="limit_exceeded",
            )
        for param, part in images:
            if not physical.vision:
                raise InvalidRequest(
                    f"The model {request.model!r} does not accept images.", param=param, code="vision_not_supported"
                )
            check_url(part.image_url.url, self.images, param)
        tools = _tools(request, physical)
        decoded = (
            await run_in_thread(
                lambda _: tuple(image_bytes(p.image_url.url, self.images, param) for param, p in images)
            )
            if images
            else ()
        )
        params = sampling_params(request, behaviour, physical.family)
        job = ChatJob(
            messages=request.messages,
            tools=tools,
            tool_choice=request.tool_choice,
            params=params,
            behaviour=behaviour,
            images=decoded,
        )
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return PreparedChat(request.model, physical, job, request.stream, include_usage)

    # ---- 2. a turn under a lease ---------------------------------------------------------------

    async def complete(self, chat: PreparedChat) -> ChatCompletion:
        started = time.perf_counter()
        builder = CompletionBuilder(chat.model)
        lease = self.controller.try_acquire(chat.physical.id) or await self.controller.acquire(chat.physical.id)
        run: ChatRun | None = None
        try:
            run = self._start(lease, chat)
            async with aclosing(paced(self._events(run), self.keepalive_s, self.cutoff)) as events:
                async for batch in events:
                    for event in batch or ():
                        builder.add(event)
        finally:
            self._release_when_stopped(lease, run)
            if run is not None:
                self._account(run, started)
        return builder.build()

    async def stream(self, chat: PreparedChat) -> AsyncGenerator[bytes, None]:
        """SSE bytes. Keep-alive comments flow whenever ``keepalive_s`` passes without bytes:
        while the model loads, the turn queues, or a long prompt is evaluated (OpenCode drops a
        connection after 5 minutes of silence). Every stream ends with a ``finish_reason``,
        after an in-band error too, followed only by usage and ``[DONE]`` (strict parsers, such
        as OpenCode's, reject anything else)."""
        encoder = ChunkEncoder(chat.model, include_usage=chat.include_usage)
        runs: list[ChatRun] = []
        try:
            async with aclosing(self._turn(chat, runs.append)) as turn:
                async for batch in turn:
                    if batch is None:
                        yield KEEPALIVE
                    elif not encoder.started:
                        yield encoder.start() + encoder.events(batch)
                    else:
                        yield encoder.events(batch)
        except LlmuxError as exc:
            yield sse(error_body(exc)) + encoder.abort(runs[0].usage() if runs else None)
        yield DONE

    def turn(self, chat: PreparedChat) -> AsyncGenerator[list[ChatEvent] | None, None]:
        """One turn under a lease, for other wire formats (the Responses API): batches of
        events, and ``None`` every ``keepalive_s`` without one — while the model loads, the turn
        queues or a long prompt is evaluated (clients drop a connection that stays silent).
        Errors raise (an ``LlmuxError``); the caller encodes them."""
        return self._turn(chat, None)

    async def _turn(
        self, chat: PreparedChat, started_run: Callable[[ChatRun], None] | None
    ) -> AsyncGenerator[list[ChatEvent] | None, None]:
        """``turn``; ``started_run`` sees the run once the lease is held (a stream's error
        chunk reports its usage so far)."""
        started = time.perf_counter()
        run: ChatRun | None = None
        try:
            lease = self.controller.try_acquire(chat.physical.id)
            if lease is None:
                acquiring = asyncio.ensure_future(self.controller.acquire(chat.physical.id))
                try:
                    while not acquiring.done():
                        await asyncio.wait({acquiring}, timeout=self.keepalive_s)
                        if not acquiring.done():
                            yield None
                except BaseException:  # the client left while the model loads or the turn queues
                    _abandon(acquiring, self.controller)
                    raise
                lease = acquiring.result()
            try:
                run = self._start(lease, chat)
                if started_run is not None:
                    started_run(run)
                yield []  # the turn has begun: a stream sends its role chunk now
                async with aclosing(paced(self._events(run), self.keepalive_s, self.cutoff)) as events:
                    async for batch in events:
                        yield batch
            finally:
                self._release_when_stopped(lease, run)
        except LlmuxError as exc:
            note(error=exc.code)
            raise
        except (GeneratorExit, asyncio.CancelledError):
            note(cancelled=True)  # the client went away
            raise
        finally:
            if run is not None:
                self._account(run, started)

    def _start(self, lease: Lease, chat: PreparedChat) -> ChatRun:
        return ChatRun(lease.engine, chat.physical.family, chat.job)

    async def _events(self, run: ChatRun) -> AsyncGenerator[list[ChatEvent], None]:
        try:
            async for batch in run.events():
                yield batch
        except LlmuxError:
            raise  # the engine's own verdict (a prompt over the context is a 400)
        except Exception as exc:
            raise GenerationFailed(f"generation failed: {type(exc).__name__}: {exc}") from exc

    def _release_when_stopped(self, lease: Lease, run: ChatRun | None) -> None:
        """2: a cancelled request may leave here while its thread is still inside a step (a
        Litestar stream's cancellation interrupts even a shielded wait): the lease goes back
        when the engine has stopped, not before."""
        if run is None or run.stopped.done():
            self.controller.release(lease)
        else:
            run.stopped.add_done_callback(lambda _: self.controller.release(lease))

    @staticmethod
    def _account(run: ChatRun, started: float) -> None:
        """3."""
        finish = run.finished
        note(
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
            reasoning_tokens=run.reasoning_tokens,
            cached_tokens=run.cached_tokens,
            finish_reason=finish.reason if finish else None,
            ttft_s=round(run.first_token_at - started, 4) if run.first_token_at is not None else None,
        )


def reservation(request: ChatCompletionRequest) -> int:
    """Tokens a request reserves under a tokens-per-minute limit until it is settled with what it
    used: the prompt at about four bytes of JSON a token (images left out), plus its completion
    budget."""
    prompt = len(msgspec.json.encode(request.messages)) - sum(
        len(p.image_url.url) for _, p in image_parts(request.messages)
    )
    budget = request.max_completion_tokens or request.max_tokens or DEFAULT_COMPLETION_RESERVE
    return max(0, prompt) // 4 + budget


def _tools(request: ChatCompletionRequest, physical: PhysicalModel) -> list[dict[str, Any]] | None:
    """The tools the prompt offers. Clients (Open WebUI, OpenCode) send ``tools`` on every
    request: a model without tool calling answers without them unless the request insists on
    a call, which it cannot honour."""
    if not request.tools or request.tool_choice == "none":
        return None
    if physical.tools:
        return cast("list[dict[str, Any]]", msgspec.to_builtins(request.tools))
    if forced_name(request.tool_choice) is not None:
        raise InvalidRequest(
            f"The model {request.model!r} does not support tool calling, so it cannot honour this tool_choice.",
            param="tool_choice",
            code="tools_not_supported",
        )
    log.info("chat.tools_dropped", model=request.model, tools=len(request.tools), reason="model has no tool calling")
    return None


def _abandon(acquiring: asyncio.Future[Lease], controller: ResidencyController) -> None:
    """Stop waiting for a lease, or give back the one granted just as the client left."""
    if not acquiring.done():
        acquiring.cancel()  # the controller drops the waiter, or releases what it granted
    elif not acquiring.cancelled() and acquiring.exception() is None:
        controller.release(acquiring.result())
