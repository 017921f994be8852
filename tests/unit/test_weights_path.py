"""``weights:`` may name a file shipped inside an installed Python package (``pkg://``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmux.errors import ModelLoadFailed
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.registry.config import Limits


def registry(weights: str) -> tuple[Registry, PhysicalModel]:
    spec = PhysicalModel(type=ModelType.LLM, backend="llamacpp", weights=weights, vram_gb=1.0, id="m")
    return Registry(16.0, Path("/models"), None, Limits(), {"m": spec}, {}), spec


def test_relative_and_absolute_paths() -> None:
    reg, spec = registry("a/b.gguf")
    assert reg.weights_path(spec) == Path("/models/a/b.gguf")
    assert reg.weights_path(spec, "/x/mmproj.gguf") == Path("/x/mmproj.gguf")


def test_package_file_is_located_without_importing_the_package() -> None:
    reg, spec = registry("pkg://json/decoder.py")
    path = reg.weights_path(spec)
    assert path.name == "decoder.py" and path.parent.name == "json" and path.is_file()


@pytest.mark.parametrize("url", ["pkg://no_such_package_xyz/file.gguf", "pkg://json", "pkg://json/../etc/passwd"])
def test_bad_package_urls(url: str) -> None:
    reg, spec = registry(url)
    with pytest.raises(ModelLoadFailed):
        reg.weights_path(spec)
