"""Reloading api_keys.yaml (services/keys.py): all or nothing, by the rules ``llmux serve`` applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmux.protocol.errors import ConfigError
from llmux.registry import Registry, load_keys
from llmux.services.keys import KeyStore
from tests.conftest import ROOT

GOOD = 'keys:\n  - {name: a, key: "sk-a-long-enough-real-key-0123456789"}\n'


def store(tmp_path: Path, reference: Registry, **kw: bool) -> tuple[KeyStore, Path, list[list[str]]]:
    path = tmp_path / "api_keys.yaml"
    path.write_text(GOOD)
    keys = KeyStore(load_keys(path), reference, path=path, **kw)
    seen: list[list[str]] = []
    keys.on_change(lambda k: seen.append([e.name for e in k.keys]))
    return keys, path, seen


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("keys: [", "not valid YAML"),
        ('keys:\n  - {name: a, key: "sk-a-long-enough-real-key-0123456789"}\n  - {name: a, key: "sk-b-long-enough-real-key-0123456789"}\n', "duplicate name"),
        ('keys:\n  - {name: b, key: "sk-b-long-enough-real-key-0123456789", models: [nope]}\n', "'nope'"),
        ('keys:\n  - {name: b, key: "CHANGE-ME-placeholder-key"}\n', "placeholder"),
        ('keys:\n  - {name: b, key: "sk-b-long-enough-real-key-0123456789", limits: {requests_per_minute: 0}}\n', "requests_per_minute"),
    ],
)
def test_a_bad_file_keeps_the_keys_in_force(tmp_path: Path, reference: Registry, text: str, why: str) -> None:
    keys, path, seen = store(tmp_path, reference, allow_weak=False)
    before = keys.keys
    path.write_text(text)
    with pytest.raises(ConfigError, match=why):
        keys.reload()
    assert keys.keys is before and seen == [["a"]]


def test_a_good_file_replaces_every_key_at_once(tmp_path: Path, reference: Registry) -> None:
    keys, path, seen = store(tmp_path, reference)
    path.write_text('keys:\n  - {name: b, key: "CHANGE-ME-fine-for-a-demo"}\n  - {name: c, key: "sk-c-long-enough-real-key-0123456789", models: [whisper-1]}\n')
    keys.reload()  # --allow-demo-keys: a placeholder is accepted, as at start
    assert seen == [["a"], ["b", "c"]]


def test_keys_given_in_code_cannot_be_reloaded(reference: Registry) -> None:
    keys = KeyStore(load_keys(ROOT / "config/demo/api_keys.yaml"), reference)
    with pytest.raises(ConfigError, match="not loaded from a file"):
        keys.reload()
