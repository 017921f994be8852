from __future__ import annotations

from pathlib import Path

import pytest

from llmux.registry import ApiKeysFile, Registry, load_keys, load_models

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"


@pytest.fixture(scope="session")
def reference() -> Registry:
    """The shipped reference deployment (config/models.yaml)."""
    return load_models(CONFIG / "models.yaml")


@pytest.fixture(scope="session")
def keys() -> ApiKeysFile:
    return load_keys(CONFIG / "api_keys.yaml")
