from __future__ import annotations

import pytest
from statemachine.exceptions import TransitionNotAllowed

from llmux.residency.lifecycle import ModelLifecycle, mermaid
from tests.conftest import ROOT


def test_statechart_file_is_generated_from_the_class() -> None:
    shipped = (ROOT / "statecharts" / "model_lifecycle.md").read_text()
    assert shipped == mermaid(), "run: python -m llmux.residency.lifecycle > statecharts/model_lifecycle.md"


def test_the_chart_has_exactly_the_designed_transitions() -> None:
    edges = {
        (t.source.id, t.target.id if t.target else None, t.event)
        for state in ModelLifecycle.states
        for t in state.transitions
    }
    assert {(s, d) for s, d, _ in edges} == {
        ("unloaded", "loading"),
        ("loading", "ready"),
        ("loading", "unloaded"),
        ("ready", "serving"),
        ("serving", "serving"),
        ("serving", "ready"),
        ("ready", "evicting"),
        ("evicting", "unloaded"),
        # the warm host-RAM tier
        ("evicting", "parked"),
        ("parked", "unparking"),
        ("parked", "unloaded"),
        ("unparking", "ready"),
        ("unparking", "unloaded"),
    }


def test_a_serving_model_cannot_be_evicted() -> None:
    m = ModelLifecycle("m")
    for event in ("load", "loaded", "acquire"):
        m.send(event)
    with pytest.raises(TransitionNotAllowed):
        m.send("evict")
    assert m.state == "serving"


def test_leases_count_up_and_the_last_release_returns_to_ready() -> None:
    m = ModelLifecycle("m")
    m.send("load")
    m.send("loaded")
    m.send("acquire")
    m.send("acquire")
    m.send("release")
    assert (m.state, m.leases) == ("serving", 1)
    m.send("release")
    assert (m.state, m.leases) == ("ready", 0)
    with pytest.raises(TransitionNotAllowed):
        m.send("release")


def test_a_failed_load_returns_to_unloaded() -> None:
    m = ModelLifecycle("m")
    m.send("load")
    m.send("load_failed")
    assert m.state == "unloaded"
    assert not m.resident


@pytest.mark.parametrize("event", ["loaded", "acquire", "evict", "evicted", "release"])
def test_events_that_make_no_sense_when_unloaded_raise(event: str) -> None:
    with pytest.raises(TransitionNotAllowed):
        ModelLifecycle("m").send(event)


def _parked() -> ModelLifecycle:
    m = ModelLifecycle("m")
    for event in ("load", "loaded", "evict", "park"):
        m.send(event)
    return m


def test_a_parked_model_holds_no_vram_and_comes_back_through_unparking() -> None:
    m = _parked()
    assert (m.state, m.resident, m.warm) == ("parked", False, True)
    m.send("unpark")
    assert (m.state, m.resident, m.warm) == ("unparking", True, False)
    m.send("loaded")
    m.send("acquire")
    assert (m.state, m.leases) == ("serving", 1)


def test_a_failed_unpark_and_a_drop_end_unloaded() -> None:
    m = _parked()
    m.send("unpark")
    m.send("load_failed")
    assert m.state == "unloaded"
    m = _parked()
    m.send("drop")
    assert (m.state, m.warm) == ("unloaded", False)


@pytest.mark.parametrize("event", ["acquire", "release", "evict", "load", "loaded", "park", "evicted"])
def test_a_parked_model_takes_no_lease_and_no_other_way_out(event: str) -> None:
    with pytest.raises(TransitionNotAllowed):
        _parked().send(event)


@pytest.mark.parametrize("event", ["park", "drop", "unpark"])
def test_only_an_eviction_parks_and_only_a_parked_model_is_dropped_or_unparked(event: str) -> None:
    m = ModelLifecycle("m")
    m.send("load")
    m.send("loaded")
    with pytest.raises(TransitionNotAllowed):
        m.send(event)
