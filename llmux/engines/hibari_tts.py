"""hibari-tts: a small English TTS on onnxruntime whose default voice ships in its wheel.

The offline demo's and the tests' speech model. Each hibari voice is a whole ONNX model; the
voices offered are those present on this machine (the packaged one plus any already in
hibari's cache): a request never triggers a download.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from llmux.engines.base import SpeakOptions, Voice
from llmux.engines.tempo import change_tempo
from llmux.registry import PhysicalModel, Registry
from llmux.registry.options import HibariOptions

DEFAULT_VOICE = "heart"
_NATIVE_SPEED = (0.5, 2.0)


def _cached_voices() -> list[str]:
    from hibari.voices import VOICES, voice_path

    names = []
    for name in VOICES:
        try:
            voice_path(name, download_missing=False)
        except (FileNotFoundError, ValueError):
            continue
        names.append(name)
    return names


class HibariTTS:
    sample_rate = 24_000

    def __init__(self, spec: PhysicalModel, registry: Registry, options: HibariOptions) -> None:
        self._model_path = registry.weights_path(spec)
        self._threads = options.threads or 1
        self._engines: dict[str, Any] = {}
        self._lock = threading.Lock()

    def languages(self) -> tuple[str, ...]:
        return ()  # English only

    def voices(self) -> list[Voice]:
        names = [DEFAULT_VOICE, *(n for n in _cached_voices() if n != DEFAULT_VOICE)]
        return [Voice(id=n, name=n) for n in names]

    def load(self) -> float | None:
        from hibari import Hibari

        engine = Hibari(voice=DEFAULT_VOICE, model=str(self._model_path), threads=self._threads)
        engine.phonemize("Warm up.")  # loads the lexicon now, not inside the first request
        self._engines = {DEFAULT_VOICE: engine}
        return None

    def unload(self) -> None:
        self._engines = {}

    def _engine(self, voice: str) -> Any:
        with self._lock:
            engine = self._engines.get(voice)
            if engine is None:
                from hibari import Hibari
                from hibari.voices import voice_path

                # The file must already be here: a request never starts a download.
                model = voice_path(voice, download_missing=False)
                engine = Hibari(voice=voice, model=model, threads=self._threads)
                self._engines[voice] = engine
            return engine

    def speak(self, text: str, voice: str, options: SpeakOptions, cancel: threading.Event) -> Iterator[np.ndarray]:
        engine = self._engine(voice)
        native = min(max(options.speed, _NATIVE_SPEED[0]), _NATIVE_SPEED[1])
        rng = np.random.default_rng()
        for phonemes in engine.phonemize(text):
            if cancel.is_set():
                return
            audio = engine.from_ids(engine.ids(phonemes), native, rng)
            yield change_tempo(audio, self.sample_rate, options.speed / native)
