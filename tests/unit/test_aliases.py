"""OpenAI's default model names as aliases configured in models.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmux.audio.language_id import detect_language
from llmux.protocol.errors import ConfigError
from llmux.registry import load_models

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("config", ["config/models.yaml", "config/demo/models.yaml"])
def test_openai_default_names_resolve_in_the_shipped_configs(config: str) -> None:
    registry = load_models(ROOT / config)
    for alias in ("whisper-1", "tts-1", "tts-1-hd"):
        virtual, physical = registry.resolve(alias)
        assert virtual.id == registry.aliases[alias] and physical.type.value in ("asr", "tts")
    assert not set(registry.aliases) & set(registry.virtual)  # /v1/models lists virtual names only


@pytest.mark.parametrize(
    ("aliases", "error"),
    [
        ("{tts-1: nope}", "$.aliases.tts-1: no virtual model named 'nope'"),
        ("{M: m}", "$.aliases.M: is already the name of the virtual model 'm'"),
    ],
)
def test_aliases_are_checked(tmp_path: Path, aliases: str, error: str) -> None:
    (tmp_path / "models.yaml").write_text(
        "physical:\n  p: {type: tts, backend: hibari, weights: w, vram_gb: 1}\n"
        f"virtual:\n  m: {{physical: p}}\naliases: {aliases}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_models(tmp_path / "models.yaml")
    assert info.value.message == error


def test_language_of_a_text_among_the_candidates() -> None:
    assert detect_language("Das ist ein schöner Tag, und wir gehen spazieren.", ("de", "en")) == "de"
    assert detect_language("This is a lovely day, and we are going for a walk.", ("de", "en")) == "en"
    assert detect_language("Ceci est une belle journée.", ("de", "en")) in ("de", "en", None)
