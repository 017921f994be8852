"""Build the engine for a physical model, importing its runtime only when first needed.

The core (config checks, the API, the residency controller) never imports torch,
llama-cpp-python or chatterbox: each runtime module is imported on the first load of a model
that uses it, so a missing optional extra is a clear load error for that model only.
"""

from __future__ import annotations

import importlib
from typing import Any

import msgspec

from llmux.engines.base import Engine
from llmux.protocol.errors import ModelLoadFailed
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.registry.options import BACKEND_OPTIONS

RUNTIMES: dict[tuple[str, ModelType], str] = {
    ("transformers", ModelType.LLM): "llmux.engines.transformers_llm:TransformersLLM",
    ("llamacpp", ModelType.LLM): "llmux.engines.llamacpp_llm:LlamaCppLLM",
    ("transformers", ModelType.ASR): "llmux.engines.transformers_asr:TransformersASR",
    ("faster-whisper", ModelType.ASR): "llmux.engines.faster_whisper_asr:FasterWhisperASR",
    ("chatterbox", ModelType.TTS): "llmux.engines.chatterbox_tts:ChatterboxTTS",
    ("hibari", ModelType.TTS): "llmux.engines.hibari_tts:HibariTTS",
    ("transformers", ModelType.EMBEDDING): "llmux.engines.transformers_embed:TransformersEmbedder",
    ("llamacpp", ModelType.EMBEDDING): "llmux.engines.llamacpp_embed:LlamaCppEmbedder",
}
"""(backend, type) -> "module:Class"; the class is called as ``Class(spec, registry, options)``."""


def options_for(spec: PhysicalModel) -> Any:
    """The model's ``options:`` decoded into its backend's Struct (already checked at load)."""
    return msgspec.convert(spec.options, BACKEND_OPTIONS[spec.backend])


def create_engine(spec: PhysicalModel, registry: Registry) -> Engine:
    target = RUNTIMES.get((spec.backend, spec.type))
    if target is None:
        raise ModelLoadFailed(f"backend {spec.backend!r} cannot serve {spec.type.value} models")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadFailed(
            f"the {spec.backend!r} runtime is not installed ({exc.name or exc}); "
            "install llmux-server with the matching extra, e.g. pip install 'llmux-server[all]'"
        ) from exc
    cls = getattr(module, class_name)
    engine: Engine = cls(spec, registry, options_for(spec))
    return engine
