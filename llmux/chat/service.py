"""Chat completions: validate, lease the physical model, run the backend in a worker thread,
encode what it yields.

Requests to one physical model run one at a time in arrival order (an ``asyncio.Lock`` is FIFO);
a request whose client goes away while queued is dropped without running, and one whose client
goes away while generating has its ``cancel`` flag set, which the backend checks every token.
The lease is held until the worker thread has really stopped, so a model is never evicted under
a running generation.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from llmux.api.errors import error_body
from llmux.api.wire import ChatCompletion, ChatCompletionRequest, ImagePart
from llmux.backends.base import ChatBackend, ChatEvent, ChatJob, Finish, SamplingParams
from llmux.chat.stream import DONE, KEEPALIVE, ChunkEncoder, CompletionBuilder, sse
from llmux.errors import InvalidRequest, LlmuxError
from llmux.registry import ModelType, Registry
from llmux.residency.controller import Lease, ResidencyController

log = structlog.get_logger("llmux.chat")


class GenerationFailed(LlmuxError):
    status = 500
    type = "server_error"
    code = "generation_failed"


@dataclass(frozen=True, slots=True)
class PreparedChat:
    """A validated request: which physical model, and the job its backend will run."""

    model: str
    physical: str
    job: ChatJob
    stream: bool
    include_usage: bool


def prepare(request: ChatCompletionRequest, registry: Registry) -> PreparedChat:
    """Resolve the model and check the request against its capabilities (400/404 here, never later)."""
    virtual, physical = registry.resolve(request.model, expect=ModelType.LLM)
    for i, message in enumerate(request.messages):
        if not isinstance(message.content, list):
            continue
        for j, part in enumerate(message.content):
            if not isinstance(part, ImagePart):
                continue
            param = f"messages[{i}].content[{j}].image_url"
            if not physical.vision:
                raise InvalidRequest(f"The model {request.model!r} does not accept images.", param=param, code="vision_not_supported")
            scheme = part.image_url.url.split(":", 1)[0].lower()
            if scheme == "data":
                continue
            if scheme in ("http", "https") and registry.limits.remote_images:
                continue
            raise InvalidRequest(
                "Send images inline as data: URLs; fetching remote image URLs is disabled on this server.",
                param=param,
                code="remote_images_disabled" if scheme in ("http", "https") else "invalid_image_url",
            )
    if request.tools and not physical.tools:
        raise InvalidRequest(f"The model {request.model!r} does not support tool calling.", param="tools")
    behaviour = virtual.behaviour
    if request.reasoning_effort is not None and physical.family == "gpt-oss":
        behaviour = msgspec.structs.replace(behaviour, reasoning_effort=request.reasoning_effort)
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    params = SamplingParams(
        max_tokens=request.max_completion_tokens or request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=stop,
        seed=request.seed,
    )
    job = ChatJob(
        messages=msgspec.to_builtins(request.messages),
        tools=msgspec.to_builtins(request.tools) if request.tools and request.tool_choice != "none" else None,
        tool_choice=request.tool_choice,
        params=params,
        behaviour=behaviour,
    )
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    return PreparedChat(request.model, physical.id, job, request.stream, include_usage)


class _Mailbox:
    """Events from the worker thread to the event loop, waking the loop at most once per batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self._wake_pending = False

    def put(self, item: Any) -> None:  # worker thread
        with self._lock:
            self._items.append(item)
            if self._wake_pending:
                return
            self._wake_pending = True
        self._loop.call_soon_threadsafe(self._ready.set)

    async def take(self) -> list[Any]:  # event loop
        await self._ready.wait()
        with self._lock:
            self._ready.clear()
            self._wake_pending = False
            items = list(self._items)
            self._items.clear()
        return items


_END = object()


class ChatService:
    def __init__(self, registry: Registry, controller: ResidencyController, *, keepalive_s: float = 5.0) -> None:
        self.registry = registry
        self.controller = controller
        self.keepalive_s = keepalive_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._workers: dict[int, asyncio.Future[None]] = {}
        self.observers: list[Callable[..., None]] = []
        """Called with the fields of every ``chat.completed`` event (metrics count tokens there)."""

    # ---- holding a model: lease, then the model's FIFO turn ----------------------------------

    async def _enter_now(self, physical: str) -> Lease | None:
        """Lease and turn at once when both are free (the common case), else None.

        Neither step suspends: ``try_acquire`` is synchronous and a free ``asyncio.Lock``
        is taken without yielding to the loop.
        """
        lock = self._locks.setdefault(physical, asyncio.Lock())
        if lock.locked():
            return None
        lease = self.controller.try_acquire(physical)
        if lease is not None:
            await lock.acquire()
        return lease

    async def _enter(self, physical: str) -> Lease:
        lease = await self._enter_now(physical)
        if lease is not None:
            return lease
        lease = await self.controller.acquire(physical)
        try:
            await self._locks[physical].acquire()
        except BaseException:
            self.controller.release(lease)
            raise
        return lease

    def _exit(self, lease: Lease) -> None:
        worker = self._workers.pop(id(lease.backend), None)
        if worker is not None and not worker.done():
            # The request was cancelled while its generation thread still runs (a Litestar
            # stream's cancellation is level-triggered: it interrupts the shielded wait in
            # ``_events`` too). Keep the model's turn and lease until the thread has stopped:
            # never unload a model under a running generation.
            worker.add_done_callback(lambda _: self._release(lease))
            return
        self._release(lease)

    def _release(self, lease: Lease) -> None:
        self._locks[lease.model].release()
        self.controller.release(lease)

    # ---- running the backend ------------------------------------------------------------------

    async def _events(self, backend: ChatBackend, job: ChatJob) -> AsyncIterator[list[ChatEvent]]:
        """Batches of events from the backend's worker thread, in order, ending with its Finish."""
        loop = asyncio.get_running_loop()
        mailbox = _Mailbox(loop)
        cancel = threading.Event()

        def work() -> None:
            try:
                events: Iterator[ChatEvent] = backend.chat(job, cancel)
                for event in events:
                    mailbox.put(event)
                    if cancel.is_set():
                        break
            except BaseException as exc:  # surfaced on the loop, not lost in the thread
                mailbox.put(exc)
                return
            mailbox.put(_END)

        worker = loop.run_in_executor(None, work)
        self._workers[id(backend)] = worker  # one generation per model at a time: the model's lock
        try:
            while True:
                batch = await mailbox.take()
                events: list[ChatEvent] = []
                for item in batch:
                    if item is _END:
                        if events:
                            yield events
                        return
                    if isinstance(item, LlmuxError):
                        raise item  # the backend's own verdict (a prompt over the context is a 400)
                    if isinstance(item, BaseException):
                        log.error("chat.backend_failed", error=repr(item))
                        raise GenerationFailed(f"generation failed: {type(item).__name__}: {item}") from item
                    events.append(item)
                yield events
        finally:
            cancel.set()
            # Hold the lease until the thread has stopped: never evict under a generation.
            await asyncio.shield(worker)

    # ---- the two response shapes --------------------------------------------------------------

    async def complete(self, chat: PreparedChat) -> ChatCompletion:
        started = time.perf_counter()
        lease = await self._enter(chat.physical)
        try:
            builder = CompletionBuilder(chat.model)
            async for batch in self._events(lease.backend, chat.job):
                for event in batch:
                    builder.add(event)
        finally:
            self._exit(lease)
        result = builder.build()
        self._log(chat, builder.finished, started, None)
        return result

    async def stream(self, chat: PreparedChat) -> AsyncIterator[bytes]:
        """SSE bytes. Keep-alive comments flow while the model loads or the request queues."""
        started = time.perf_counter()
        encoder = ChunkEncoder(chat.model, include_usage=chat.include_usage)
        lease = await self._enter_now(chat.physical)
        if lease is None:
            entering = asyncio.ensure_future(self._enter(chat.physical))
            try:
                while not entering.done():
                    await asyncio.wait({entering}, timeout=self.keepalive_s)
                    if not entering.done():
                        yield KEEPALIVE
                lease = entering.result()
            except LlmuxError as exc:
                yield sse(error_body(exc)) + DONE
                return
            finally:
                if not entering.done():
                    entering.cancel()
                elif lease is None and not entering.cancelled() and entering.exception() is None:
                    self._exit(entering.result())  # the client left just as the model became ready
        first_token: float | None = None
        try:
            yield encoder.start()
            async for batch in self._events(lease.backend, chat.job):
                if first_token is None:
                    first_token = time.perf_counter() - started
                yield encoder.events(batch)
        except LlmuxError as exc:
            yield sse(error_body(exc))
        finally:
            self._exit(lease)
        yield DONE
        self._log(chat, encoder.finished, started, first_token)

    def _log(self, chat: PreparedChat, finish: Finish | None, started: float, ttft: float | None) -> None:
        usage = finish.usage if finish else None
        fields: dict[str, Any] = {
            "model": chat.model,
            "physical": chat.physical,
            "stream": chat.stream,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "finish_reason": finish.reason if finish else None,
            "ttft_s": round(ttft, 4) if ttft is not None else None,
            "duration_s": round(time.perf_counter() - started, 4),
        }
        log.info("chat.completed", **fields)
        for observe in self.observers:
            observe(**fields)
