"""``preload:`` and ``pinned:`` in models.yaml: names (physical, virtual or alias) resolve to
physical ids, preloads are ordered ASR, TTS, LLM (stable within a type), unknown names are
config errors naming the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmux.protocol.errors import ConfigError
from llmux.registry import load_models

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo" / "models.yaml"


def registry_with(tmp_path: Path, extra: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "models.yaml"
    path.write_text(DEMO.read_text() + "\n" + extra)
    return load_models(path)


def test_names_resolve_to_physical_ids_in_priority_order(tmp_path: Path) -> None:
    registry = registry_with(
        tmp_path, "preload: [smollm2, all-minilm, tts-1, whisper-tiny-en, smollm2-135m]\npinned: [whisper-1]\n"
    )
    # The reverse of the eviction order: ASR, TTS, the embedding model (its default place), LLM.
    assert registry.preload == ("whisper-tiny-en", "hibari", "all-minilm-l6-v2", "smollm2-135m")
    assert registry.pinned == ("whisper-tiny-en",)


def test_the_order_follows_a_configured_eviction_order(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, "eviction_order: [llm, tts, embedding, asr]\npreload: [all-minilm, tts-1]\n")
    assert registry.preload == ("all-minilm-l6-v2", "hibari")


def test_none_by_default() -> None:
    registry = load_models(DEMO)
    assert registry.preload == () and registry.pinned == ()


@pytest.mark.parametrize("field", ["preload", "pinned"])
def test_an_unknown_name_is_a_config_error(tmp_path: Path, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"\$\.{field}\[1\]: no physical or virtual model named 'nope'"):
        registry_with(tmp_path, f"{field}: [hibari, nope]\n")
