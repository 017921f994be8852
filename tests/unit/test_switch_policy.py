"""The switch policy (``residency/switch.py``), rule by rule, and the measured costs it reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmux.residency import switch
from llmux.residency.costs import SwitchCosts
from llmux.residency.switch import Hold, Pending, Start, Victim

MAX_WAIT = 15.0


def pending(cost: float = 4.0, since: float = 100.0) -> Pending:
    return Pending("b", oldest_since=since, cost_s=cost)


def test_rule1_a_swap_that_evicts_nothing_starts_now() -> None:
    assert switch.decide(100.0, pending(), [], MAX_WAIT) == Start("fits")


def test_rule2_a_stale_waiter_forces_the_switch_even_inside_the_window() -> None:
    busy = Victim("a", ready_since=110.0, in_use=True, last_used=114.0)
    assert switch.decide(115.0, pending(since=100.0), [busy], MAX_WAIT) == Start("stale")


def test_rule3_an_idle_victim_past_its_grace_does_not_hold() -> None:
    idle = Victim("a", ready_since=100.0, in_use=False, last_used=100.0)
    assert switch.decide(102.0, pending(), [idle], MAX_WAIT) == Start("idle")


def test_rule4_a_victim_in_use_keeps_its_serving_window() -> None:
    busy = Victim("a", ready_since=100.0, in_use=True, last_used=101.0)
    # window = 2 × 4 s from ready; the waiter arrived at 101, stale at 116
    assert switch.decide(102.0, pending(since=101.0), [busy], MAX_WAIT) == Hold(108.0, "serving")


def test_rule4_the_hold_never_outlasts_the_staleness_deadline() -> None:
    busy = Victim("a", ready_since=100.0, in_use=True, last_used=101.0)
    assert switch.decide(102.0, pending(cost=20.0, since=95.0), [busy], MAX_WAIT) == Hold(110.0, "serving")


def test_rule4_a_victim_between_two_turns_is_held_for_the_grace() -> None:
    resting = Victim("a", ready_since=100.0, in_use=False, last_used=102.5)
    # grace = min(1 s, 4 s / 4): the next turn of the same client coalesces
    assert switch.decide(103.0, pending(), [resting], MAX_WAIT) == Hold(103.5, "grace")


def test_rule5_past_the_window_the_swap_starts() -> None:
    busy = Victim("a", ready_since=100.0, in_use=True, last_used=108.5)
    assert switch.decide(109.0, pending(since=105.0), [busy], MAX_WAIT) == Start("window_over")


def test_unmeasured_costs_hold_nothing() -> None:
    busy = Victim("a", ready_since=100.0, in_use=True, last_used=101.0)
    assert switch.decide(101.0, pending(cost=0.0), [busy], MAX_WAIT) == Start("window_over")


VICTIMS = st.lists(
    st.builds(
        Victim,
        id=st.sampled_from(["a", "t", "s"]),
        ready_since=st.floats(0, 200),
        in_use=st.booleans(),
        last_used=st.floats(0, 200),
    ),
    max_size=3,
)


@given(
    now=st.floats(0, 300), since=st.floats(0, 300), cost=st.floats(0, 60), victims=VICTIMS, max_wait=st.floats(0.1, 60)
)
def test_a_hold_ends_in_the_future_and_never_after_the_staleness_deadline(
    now: float, since: float, cost: float, victims: list[Victim], max_wait: float
) -> None:
    verdict = switch.decide(now, Pending("b", since, cost), victims, max_wait)
    if isinstance(verdict, Hold):
        assert now < verdict.until <= since + max_wait
        assert verdict.until <= max(v.ready_since for v in victims) + switch.window_s(cost)
    if now >= since + max_wait:
        assert isinstance(verdict, Start)


def test_costs_are_a_moving_average_per_model_and_phase() -> None:
    costs = SwitchCosts()
    assert costs.estimate("a", "load") == 0.0
    costs.observe("a", "load", 10.0)
    costs.observe("a", "load", 0.0)
    assert costs.estimate("a", "load") == pytest.approx(7.0)
    costs.observe("b", "unload", 1.0)
    assert costs.switch_s("a", ("b",)) == pytest.approx(8.0)
    stats = costs.snapshot()[("a", "load")]
    assert (stats.count, stats.total_s) == (2, 10.0)
