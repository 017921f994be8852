"""``<data_dir>/pins.json``: admin pins written atomically and applied at start; a damaged file
or a model no longer configured pins nothing (and never stops the start)."""

from __future__ import annotations

import json
from pathlib import Path

from llmux.residency.controller import ResidencyController
from llmux.services.pins import PinFile
from tests.support.backends import instant_factory
from tests.support.http import demo_registry


def controller() -> ResidencyController:
    return ResidencyController(demo_registry(), instant_factory())


def pinned(c: ResidencyController) -> list[str]:
    return [m.id for m in c.status() if m.pinned]


async def test_saved_pins_are_applied_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "data" / "pins.json"
    first = controller()
    first.pin("hibari")
    await PinFile(path).save(first)
    assert json.loads(path.read_text()) == {"pinned": ["hibari"]}
    assert not list(path.parent.glob("*.partial"))
    second = controller()
    PinFile(path).apply(second)
    assert pinned(second) == ["hibari"]


def test_a_damaged_file_or_an_unknown_model_pins_nothing(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    for text in ("{not json", '{"pinned": 3}', "[]", json.dumps({"pinned": ["gone-model"]})):
        path.write_text(text)
        c = controller()
        PinFile(path).apply(c)
        assert pinned(c) == [], text
    c = controller()
    PinFile(None).apply(c)  # no data dir: nothing to read
    PinFile(tmp_path / "missing.json").apply(c)
    assert pinned(c) == []
