"""Speech recognition on transformers: cohere-transcribe (native ``cohere_asr``).

Audio arrives decoded (16 kHz mono float32): the processor is never handed a file path (the
transformers pipeline would shell out to an ffmpeg binary). Audio longer than the model's 35 s
window is split by the feature extractor at quiet points and the processor stitches the
pieces' text back together. Whisper checkpoints are served by the faster-whisper backend.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

from llmux.engines.base import ASR_SAMPLE_RATE, Segment, TranscribeOptions, Transcript
from llmux.engines.devices import torch_device
from llmux.protocol.errors import InvalidRequest, ModelLoadFailed
from llmux.registry import PhysicalModel, Registry
from llmux.registry.options import TransformersOptions

MAX_NEW_TOKENS = 440
"""Per 35 s chunk: far above what that much speech needs; the decoder has 1024 positions."""


def torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def _stopper(cancel: threading.Event) -> Any:
    import torch
    from transformers import StoppingCriteria

    class Cancelled(StoppingCriteria):  # checked after every generated token
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            return torch.full(  # type: ignore[return-value]  # a bool tensor; torch's stubs have no BoolTensor constructor
                (input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return Cancelled()


class TransformersASR:
    def __init__(self, spec: PhysicalModel, registry: Registry, options: TransformersOptions) -> None:
        self._path = registry.weights_path(spec)
        self._options = options
        self._model: Any = None
        self._processor: Any = None
        self.device = "cpu"

    def load(self) -> float | None:
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

        self.device = torch_device(self._options.device)
        self._dtype = torch_dtype(self._options.dtype, self.device)
        self._processor = AutoProcessor.from_pretrained(self._path, local_files_only=True)
        model = AutoModelForSpeechSeq2Seq.from_pretrained(self._path, dtype=self._dtype, local_files_only=True)
        if model.config.model_type != "cohere_asr":
            raise ModelLoadFailed(
                f"{self._path}: a {model.config.model_type!r} checkpoint; the transformers ASR backend serves "
                "cohere_asr (serve Whisper with backend: faster-whisper)"
            )
        self._model = model.to(self.device).eval()
        return None  # the controller measures device memory around the load

    def park(self) -> float | None:
        """Host RAM keeps the loaded model and processor (``engines.torch_park``)."""
        from llmux.engines.torch_park import park_module

        return park_module(self._model) if self._model is not None else None

    def unpark(self) -> float | None:
        from llmux.engines.torch_park import unpark_module

        unpark_module(self._model, self.device)
        return None  # the controller measures device memory around it, as around a load

    def unload(self) -> None:
        self._model = self._processor = None
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def transcribe(self, audio: Any, options: TranscribeOptions, cancel: threading.Event) -> Transcript:
        import torch

        with torch.inference_mode():
            text = self._cohere(audio, options, cancel)
        duration = len(audio) / ASR_SAMPLE_RATE
        segments = (Segment(start=0.0, end=duration, text=text),) if text else ()
        return Transcript(text=text, language=options.language, duration=duration, segments=segments)

    def _generate_kwargs(self, options: TranscribeOptions, cancel: threading.Event) -> dict[str, Any]:
        configured = self._model.generation_config.max_new_tokens
        kwargs: dict[str, Any] = {
            "max_new_tokens": min(MAX_NEW_TOKENS, configured or MAX_NEW_TOKENS),
            "stopping_criteria": [_stopper(cancel)],
        }
        if options.temperature > 0:
            kwargs.update(do_sample=True, temperature=options.temperature)
        else:
            kwargs.update(do_sample=False)
        return kwargs

    def _cohere(self, audio: Any, options: TranscribeOptions, cancel: threading.Event) -> str:
        from transformers.models.cohere_asr.processing_cohere_asr import LANGUAGES

        if options.language not in LANGUAGES:
            supported = ", ".join(sorted(LANGUAGES))
            raise InvalidRequest(
                f"Language {options.language!r} is not supported by this model ({supported}).", param="language"
            )
        inputs = self._processor(audio, sampling_rate=ASR_SAMPLE_RATE, return_tensors="pt", language=options.language)
        chunks = inputs.pop("audio_chunk_index", None)
        inputs = inputs.to(self.device, dtype=self._dtype)
        output = self._model.generate(**inputs, **self._generate_kwargs(options, cancel))
        texts = self._processor.decode(
            output, skip_special_tokens=True, audio_chunk_index=chunks, language=options.language
        )
        return str(texts[0] if isinstance(texts, list) else texts).strip()
