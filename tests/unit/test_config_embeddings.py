"""models.yaml for embedding models: the type, ``matryoshka``, and the configurable eviction order."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmux.protocol.errors import ConfigError
from llmux.registry import ModelType, load_models

EMB = "{type: embedding, backend: transformers, weights: w, vram_gb: 0.2}"


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return load_models(path)


def test_an_embedding_model_gets_the_default_order(tmp_path: Path) -> None:
    registry = _load(tmp_path, f"physical:\n  e: {EMB}\n")
    assert registry.physical["e"].type is ModelType.EMBEDDING
    ranks = [registry.priority(t) for t in (ModelType.LLM, ModelType.EMBEDDING, ModelType.TTS, ModelType.ASR)]
    assert ranks == [0, 1, 2, 3]


def test_eviction_order_moves_embedding(tmp_path: Path) -> None:
    registry = _load(tmp_path, "eviction_order: [embedding, llm, tts, asr]\n")
    assert registry.priority(ModelType.EMBEDDING) < registry.priority(ModelType.LLM)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("eviction_order: [llm, tts, asr]\n", "$.eviction_order: list every model type once"),
        ("eviction_order: [llm, embedding, tts, asr, asr]\n", "$.eviction_order: list every model type once"),
        ("eviction_order: [tts, llm, embedding, asr]\n", "llm, tts and asr keep that order"),
        ("eviction_order: [llm, gpu, tts, asr]\n", "$.eviction_order[1]: invalid enum value 'gpu'"),
        ("physical:\n  m: {type: llm, backend: transformers, weights: w, vram_gb: 1, matryoshka: true}\n",
         "$.physical.m.matryoshka: applies to embedding models only"),
        ("physical:\n  e: {type: embedding, backend: llamacpp, weights: w, vram_gb: 1, options: {pooling: max}}\n",
         "$.physical.e.options.pooling: invalid enum value 'max'"),
        ("limits: {max_embedding_inputs: 0}\n", "$.limits.max_embedding_inputs: expected an integer >= 1"),
    ],
)
def test_embedding_config_errors_name_the_path(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert message in error.value.message
