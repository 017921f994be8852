"""Test engines that work until they are cancelled, and a small registry for them: for the tests
of clients that go away, admission and the soak (never a product feature).

Each engine counts, per kind, how many jobs ran and how many saw their ``cancel`` flag; the
work never ends on its own (unless ``steps`` bounds it), so a test can only pass if llmux
cancels it.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from llmux.engines.base import ASR_SAMPLE_RATE, Prompted, SpeakOptions, TextJob, TranscribeOptions, Transcript, Voice
from llmux.engines.text import Item
from llmux.registry import ApiKey, ApiKeysFile, ModelType, PhysicalModel, Registry, load_models
from tests.support.backends import InstantChat

KEY = "sk-reliability-test-0123456789"
KEYS = ApiKeysFile((ApiKey(name="tester", key=KEY, role="admin"),))
MODELS = """
budget_gb: 16
physical:
  talk: {type: llm, backend: transformers, family: chatml, weights: talk, vram_gb: 6}
  other: {type: llm, backend: transformers, family: chatml, weights: other, vram_gb: 6}
  fat: {type: llm, backend: transformers, family: chatml, weights: fat, vram_gb: 6}
  ears: {type: asr, backend: transformers, weights: ears, vram_gb: 2}
  mouth: {type: tts, backend: hibari, weights: mouth, vram_gb: 1}
virtual:
  talk: {physical: talk}
  other: {physical: other}
  fat: {physical: fat}
  ears: {physical: ears}
  mouth: {physical: mouth}
"""

RAN: Counter[str] = Counter()
CANCELLED: Counter[str] = Counter()
LOCK = threading.Lock()


def count(counter: Counter[str], kind: str) -> None:
    with LOCK:
        counter[kind] += 1


def registry(tmp: Path, extra: str = "") -> Registry:
    (tmp / "models.yaml").write_text(textwrap.dedent(MODELS) + extra)
    return load_models(tmp / "models.yaml")


class SlowChat(InstantChat):
    """Yields a token every millisecond until cancelled (or ``max_tokens`` tokens); the ``fat``
    model's tokens are 16 KB each, so a client that stops reading fills the socket buffers fast."""

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        count(RAN, "chat")
        limit = job.params.max_tokens or 1_000_000
        try:
            yield Prompted(1, limit)
            for _ in range(limit):
                if cancel.is_set():
                    break
                time.sleep(0.001)
                yield "x" * 16384 if self.spec.id == "fat" else "tick "
            else:
                yield None
                return
        except GeneratorExit:  # the worker closes a cancelled generation at its next piece
            pass
        count(CANCELLED, "chat")


class SlowEars:
    def __init__(self, spec: PhysicalModel, registry: Registry) -> None:
        self.spec = spec

    def load(self) -> float | None:
        return None

    def unload(self) -> None:
        pass

    def transcribe(self, audio: Any, options: TranscribeOptions, cancel: threading.Event) -> Transcript:
        count(RAN, "transcribe")
        seconds = len(audio) / ASR_SAMPLE_RATE
        # One second of audio takes one second to "transcribe"; a long file outlasts any client.
        if cancel.wait(seconds):
            count(CANCELLED, "transcribe")
        return Transcript(text="hm", language=options.language, duration=seconds)


class SlowMouth:
    sample_rate = 24_000

    def __init__(self, spec: PhysicalModel, registry: Registry) -> None:
        self.spec = spec

    def load(self) -> float | None:
        return None

    def unload(self) -> None:
        pass

    def voices(self) -> list[Voice]:
        return [Voice("anna", "Anna")]

    def speak(self, text: str, voice: str, options: SpeakOptions, cancel: threading.Event) -> Iterator[Any]:
        count(RAN, "speech")
        # 0.1 s of silence per 10 ms, per character: "x" * 200 takes two seconds.
        try:
            for _ in range(len(text)):
                if cancel.wait(0.01):
                    break
                yield np.zeros(self.sample_rate // 10, dtype=np.float32)
            else:
                return
        except GeneratorExit:
            pass
        count(CANCELLED, "speech")


def factory(spec: PhysicalModel, registry: Registry) -> Any:
    return {ModelType.LLM: SlowChat, ModelType.ASR: SlowEars, ModelType.TTS: SlowMouth}[spec.type](spec, registry)
