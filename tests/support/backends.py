"""Test backends for the residency logic and the API skeleton (never a product feature).

``InstantChat`` answers at once with a scripted stream of events; ``ScriptedChat`` lets a test
decide each event; both honour ``cancel`` the way real runtimes must.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from llmux.backends.base import (
    ChatEvent,
    ChatJob,
    ContentDelta,
    Finish,
    ReasoningDelta,
    ToolCallArgs,
    ToolCallStart,
    Usage,
)
from llmux.registry import PhysicalModel, Registry


class InstantChat:
    """Echoes what it was asked, one word per chunk; tools get one call; ``max_tokens`` (or
    ``chunks``) more one-character chunks pad the stream, for benchmarks."""

    def __init__(self, spec: PhysicalModel, registry: Registry | None = None, options: Any = None, *, chunks: int = 0) -> None:
        self.spec = spec
        self.chunks = chunks
        self.loaded = False
        self.jobs: list[ChatJob] = []

    def load(self) -> float | None:
        self.loaded = True
        return None

    def unload(self) -> None:
        self.loaded = False

    def chat(self, job: ChatJob, cancel: threading.Event) -> Iterator[ChatEvent]:
        assert self.loaded, "chat on an unloaded backend"
        self.jobs.append(job)
        last = job.messages[-1].get("content")
        text = last if isinstance(last, str) else json.dumps(last)
        emitted = 0
        if job.behaviour.thinking or job.behaviour.reasoning_effort:
            yield ReasoningDelta(f"effort={job.behaviour.reasoning_effort} thinking={job.behaviour.thinking}")
        if job.tools:
            name = job.tools[0]["function"]["name"]
            yield ToolCallStart(0, "call_test0", name)
            yield ToolCallArgs(0, '{"echo": ')
            yield ToolCallArgs(0, json.dumps(text) + "}")
            yield Finish("tool_calls", Usage(len(text.split()), 3))
            return
        for word in f"echo: {text}".split(" "):
            if cancel.is_set():
                return
            yield ContentDelta(word + " ")
            emitted += 1
        for i in range(job.params.max_tokens or self.chunks):
            if cancel.is_set():
                return
            yield ContentDelta("x")
            emitted += 1
        yield Finish("stop", Usage(len(text.split()), emitted))


def instant_factory(chunks: int = 0):  # type: ignore[no-untyped-def]
    def factory(spec: PhysicalModel, registry: Registry) -> InstantChat:
        return InstantChat(spec, registry, chunks=chunks)

    return factory
