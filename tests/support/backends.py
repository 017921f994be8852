"""Test engines for the residency logic and the API skeleton (never a product feature).

``InstantChat`` is a text engine behind the real chat pipeline: it gets the prompt llmux
rendered with its tiny template and answers at once, in the model family's own output format
(so the real parsers turn it into reasoning, content and tool calls). It echoes the last
message, reports the behaviour it can read in the prompt (thinking on/off, a ``Reasoning:``
line), calls the first tool when tools are offered, and honours ``cancel`` between pieces the
way real runtimes must.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

from llmux.engines.base import ChatTemplate, Prompted, TextJob
from llmux.engines.text import Item, SerialTextEngine, completion_budget
from llmux.registry import PhysicalModel, Registry

TEMPLATE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }} {% endfor %}</tools>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{{ m.content if m.content is string else m.content | tojson }}<|im_end|>\n{% endfor %}"
    "<|im_start|>assistant\n"
    "{% if enable_thinking is defined %}{{ '<think>\n' if enable_thinking else '<think>\n\n</think>\n\n' }}{% endif %}"
)
CONTEXT = 1 << 20


class InstantChat(SerialTextEngine):
    """``chunks`` more one-character pieces pad each answer, for benchmarks."""

    def __init__(self, spec: PhysicalModel, registry: Registry | None = None, options: Any = None, *, chunks: int = 0) -> None:
        super().__init__(spec.id)
        self.spec = spec
        self.chunks = chunks
        self.loaded = False
        self.jobs: list[TextJob] = []

    def load(self) -> float | None:
        self.loaded = True
        return None

    def unload(self) -> None:
        self.loaded = False

    def template(self) -> ChatTemplate:
        return ChatTemplate(source=TEMPLATE, image_part={"type": "text", "text": "<image>"} if self.spec.vision else None)

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        assert self.loaded, "generate on an unloaded engine"
        self.jobs.append(job)
        text = re.findall(r"<\|im_start\|>\w+\n(.*?)<\|im_end\|>", job.prompt, re.S)[-1]
        yield Prompted(len(text.split()), completion_budget(job.params.max_tokens, len(text.split()), CONTEXT))
        yield from self.answer(job.prompt, text, cancel)

    def answer(self, prompt: str, text: str, cancel: threading.Event) -> Iterator[str | None]:
        """The pieces of one answer, in the family's format."""
        harmony = self.spec.family == "gpt-oss"
        thinking = True if prompt.endswith("<think>\n") else False if prompt.endswith("</think>\n\n") else None
        effort = next(iter(re.findall(r"Reasoning: (\w+)", prompt)), None)
        if thinking or effort:
            note = f"effort={effort} thinking={thinking}"
            yield f"<|channel|>analysis<|message|>{note}<|end|><|start|>assistant" if harmony else f"{note}</think>"
        tools = re.findall(r"<tools>(\S+)", prompt)
        forced = re.search(r"<tool_call>\n<function=(?:(\w+)>\n)?$", prompt)
        if forced and not harmony:  # a forced tool_choice pre-filled the call's opening: go on from there
            rest = "" if forced.group(1) else f"{tools[0]}>\n"
            yield f"{rest}<parameter=echo>\n{text}\n</parameter>\n</function>\n</tool_call>"
            yield None
            return
        if tools:
            if harmony:
                yield f"<|channel|>commentary to=functions.{tools[0]} <|constrain|>json<|message|>"
                yield json.dumps({"echo": text}) + "<|call|>"
            else:
                yield f"<tool_call>\n<function={tools[0]}>\n<parameter=echo>\n{text}\n</parameter>\n</function>\n</tool_call>"
            yield None
            return
        if harmony:
            yield "<|channel|>final<|message|>"
        for word in f"echo: {text}".split(" "):
            if cancel.is_set():
                return
            yield word + " "
        for _ in range(self.chunks):
            if cancel.is_set():
                return
            yield "x"
        yield None


def instant_factory(chunks: int = 0):  # type: ignore[no-untyped-def]
    def factory(spec: PhysicalModel, registry: Registry) -> InstantChat:
        return InstantChat(spec, registry, chunks=chunks)

    return factory
