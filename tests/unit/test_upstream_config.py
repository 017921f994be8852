"""``backend: openai`` in models.yaml: an upstream has no weights and costs no VRAM, and a local
model still needs both; mistakes are errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmux.protocol.errors import ConfigError
from llmux.registry import ModelType, load_models
from llmux.residency.controller import ResidencyController

REMOTE = "type: llm, backend: openai, options: {base_url: 'http://gpu-box:8000/v1', model: qwen}"


def load(tmp_path: Path, physical: str) -> object:
    (tmp_path / "models.yaml").write_text(f"physical:\n  m: {{{physical}}}\nvirtual:\n  v: {{physical: m}}\n")
    return load_models(tmp_path / "models.yaml")


def test_an_upstream_needs_neither_weights_nor_vram(tmp_path: Path) -> None:
    registry = load(tmp_path, REMOTE)
    spec = registry.physical["m"]  # type: ignore[attr-defined]
    assert spec.remote and spec.vram_gb == 0 and spec.type is ModelType.LLM
    controller = ResidencyController(registry, lambda *_: None)  # type: ignore[arg-type]
    assert controller.status() == []  # never planned, leased or evicted


@pytest.mark.parametrize(
    ("physical", "message"),
    [
        (REMOTE + ", weights: w", "$.physical.m.weights: an openai upstream has no local weights"),
        (REMOTE + ", vram_gb: 4", "$.physical.m.vram_gb: an openai upstream uses no local VRAM"),
        (REMOTE + ", family: chatml", "$.physical.m.family: an openai upstream has no local weights or template"),
        ("type: llm, backend: openai, options: {base_url: 'http://x/v1', api_key: a, api_key_env: B}",
         "$.physical.m.options: set api_key or api_key_env, not both"),
        ("type: llm, backend: openai, options: {base_url: 'gpu-box:8000'}", "$.physical.m.options.base_url"),
        ("type: llm, backend: openai, options: {model: qwen}", "$.physical.m.options: object missing required field `base_url`"),
        ("type: llm, backend: llamacpp, weights: w", "$.physical.m: object missing required field `vram_gb`"),
        ("type: llm, backend: llamacpp, vram_gb: 1", "$.physical.m: object missing required field `weights`"),
    ],
)
def test_mistakes_name_the_field(tmp_path: Path, physical: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, physical)
    assert str(error.value).startswith(message), str(error.value)


def test_a_key_named_by_an_unset_variable_stops_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmux.services.upstream import UpstreamService

    monkeypatch.delenv("LLMUX_NO_SUCH_KEY", raising=False)
    registry = load(tmp_path, "type: llm, backend: openai, options: {base_url: 'http://x/v1', api_key_env: LLMUX_NO_SUCH_KEY}")
    with pytest.raises(ConfigError, match="LLMUX_NO_SUCH_KEY"):
        UpstreamService(registry)  # type: ignore[arg-type]


def test_credentials_in_the_url_are_never_shown(tmp_path: Path) -> None:
    from llmux.services.upstream import UpstreamService

    registry = load(tmp_path, "type: llm, backend: openai, options: {base_url: 'http://me:secret@x:8000/v1'}")
    (status,) = UpstreamService(registry).status()  # type: ignore[arg-type]
    assert status.url == "http://x:8000/v1" and status.state == "unknown"


@pytest.mark.parametrize("field", ["preload", "pinned"])
def test_an_upstream_cannot_be_preloaded_or_pinned(tmp_path: Path, field: str) -> None:
    (tmp_path / "models.yaml").write_text(f"physical:\n  m: {{{REMOTE}}}\nvirtual:\n  v: {{physical: m}}\n{field}: [v]\n")
    with pytest.raises(ConfigError, match=rf"\$\.{field}\[0\]: 'v' is a remote upstream"):
        load_models(tmp_path / "models.yaml")
