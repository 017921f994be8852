"""Chatterbox TTS (resemble-ai/chatterbox): standard, Turbo and Multilingual, from local files.

Voices: ``default`` is the checkpoint's built-in voice (its ``conds.pt``); every audio file in
the configured voices directory is a reference voice named by its file stem. A request names a
voice from that list, never a path; the file is found by looking the name up in a fresh
listing of the directory.

Chatterbox keeps the current voice on the model object (``model.conds``), so generation is
serialised by a lock, and each reference voice's conditionals are computed once and cached.
``generate`` cannot be interrupted: a cancelled request stops at the next piece of text.
"""

from __future__ import annotations

import gc
import importlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from llmux.engines.base import SpeakOptions, Voice
from llmux.engines.tempo import change_tempo
from llmux.protocol.errors import InvalidRequest
from llmux.registry import PhysicalModel, Registry
from llmux.registry.options import ChatterboxOptions

BUILTIN_VOICE = "default"
MULTILINGUAL_LANGUAGES = (
    "ar", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "it", "ja",
    "ko", "ms", "nl", "no", "pl", "pt", "ru", "sv", "sw", "tr", "zh",
)  # fmt: skip
"""What Chatterbox-Multilingual speaks: ``chatterbox.mtl_tts.SUPPORTED_LANGUAGES``, written out so
that choosing a request's language never imports torch (a test keeps the two equal)."""
VARIANTS = {
    "standard": ("chatterbox.tts", "ChatterboxTTS"),
    "turbo": ("chatterbox.tts_turbo", "ChatterboxTurboTTS"),
    "multilingual": ("chatterbox.mtl_tts", "ChatterboxMultilingualTTS"),
}
REFERENCE_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg"})
_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def reference_voices(voices_dir: Path | None) -> dict[str, Path]:
    """Voice name -> reference recording: regular audio files directly in ``voices_dir`` with
    a plain name (no hidden files, no links out of the directory)."""
    if voices_dir is None or not voices_dir.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(voices_dir.iterdir()):
        if path.suffix.lower() not in REFERENCE_SUFFIXES or not _VOICE_NAME.match(path.stem):
            continue
        if path.is_symlink() or not path.is_file() or path.stem == BUILTIN_VOICE:
            continue
        found.setdefault(path.stem, path)
    return found


class ChatterboxTTS:
    sample_rate = 24_000

    def __init__(self, spec: PhysicalModel, registry: Registry, options: ChatterboxOptions) -> None:
        self._dir = registry.weights_path(spec)
        self._voices_dir = registry.voices_dir
        self._options = options
        self._model: Any = None
        self._builtin: Any = None
        self._cache: dict[tuple[str, float], Any] = {}
        self._lock = threading.Lock()

    def languages(self) -> tuple[str, ...]:
        return MULTILINGUAL_LANGUAGES if self._options.variant == "multilingual" else ()

    def voices(self) -> list[Voice]:
        names = [BUILTIN_VOICE] if (self._dir / "conds.pt").exists() else []
        names += list(reference_voices(self._voices_dir))
        return [Voice(id=n, name=n) for n in names]

    def load(self) -> float | None:
        from llmux.engines.devices import torch_device

        module_name, class_name = VARIANTS[self._options.variant]
        model_class = getattr(importlib.import_module(module_name), class_name)
        self.attach(model_class.from_local(self._dir, torch_device(self._options.device)))
        return None  # the controller measures device memory around the load

    def attach(self, model: Any) -> None:
        """Serve ``model`` (a loaded Chatterbox object); ``load`` ends here."""
        self._model = model
        self._builtin = model.conds
        self._cache = {}

    def unload(self) -> None:
        self._model = self._builtin = None
        self._cache = {}
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def speak(self, text: str, voice: str, options: SpeakOptions, cancel: threading.Event) -> Iterator[np.ndarray]:
        kwargs = self._generate_kwargs(options)
        with self._lock:
            conds = self._conditionals(voice)
        if cancel.is_set():
            return
        with self._lock:
            self._model.conds = conds
            wav = self._model.generate(text, **kwargs)
        audio = wav.squeeze(0).detach().cpu().numpy().astype(np.float32)
        yield change_tempo(audio, self.sample_rate, options.speed)

    def _conditionals(self, voice: str) -> Any:
        if voice == BUILTIN_VOICE and self._builtin is not None:
            return self._builtin
        path = reference_voices(self._voices_dir).get(voice)
        if path is None:
            raise InvalidRequest(f"Unknown voice {voice!r}.", param="voice", code="voice_not_found")
        key = (voice, path.stat().st_mtime)
        if key not in self._cache:  # a re-recorded file has a new mtime and is prepared again
            self._model.prepare_conditionals(str(path), exaggeration=self._options.exaggeration)
            self._cache[key] = self._model.conds
        return self._cache[key]

    def _generate_kwargs(self, options: SpeakOptions) -> dict[str, Any]:
        o = self._options
        if o.variant == "turbo":  # Turbo has no exaggeration or CFG and warns when given them
            return {"temperature": o.temperature, "exaggeration": 0.0, "cfg_weight": 0.0, "min_p": 0.0}
        kwargs: dict[str, Any] = {
            "temperature": o.temperature,
            "exaggeration": o.exaggeration,
            "cfg_weight": o.cfg_weight,
        }
        if o.variant == "multilingual":
            from chatterbox.mtl_tts import SUPPORTED_LANGUAGES

            language = (options.language or "en").lower()
            if language not in SUPPORTED_LANGUAGES:
                supported = ", ".join(sorted(SUPPORTED_LANGUAGES))
                raise InvalidRequest(f"Language {language!r} is not supported ({supported}).", param="language")
            kwargs["language_id"] = language
        return kwargs
