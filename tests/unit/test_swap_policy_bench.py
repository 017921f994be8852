"""The switch policy through the real controller on a virtual clock (``bench.swap_policy``):
the issue's targets on two alternating agents, and the staleness bound on random ones."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import swap_policy as bench


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``bench.quiet()`` configures structlog globally: later tests capture logs again."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_two_alternating_agents_swap_3x_less_and_serve_over_half_the_time() -> None:
    bench.quiet()
    fifo, policy = bench.replay(bench.agents, "fifo"), bench.replay(bench.agents, "switch")
    assert fifo.swaps >= 3 * policy.swaps
    assert 1 - fifo.switch_s / fifo.length_s < 0.15
    assert 1 - policy.switch_s / policy.length_s >= 0.5
    assert policy.max_wait <= bench.MAX_WAIT_S + bench.longest_switch_s()


def test_when_everything_fits_the_policy_changes_nothing() -> None:
    bench.quiet()
    fifo, policy = bench.replay(bench.chat_with_voice, "fifo"), bench.replay(bench.chat_with_voice, "switch")
    assert (fifo.swaps, fifo.waits) == (policy.swaps, policy.waits)


TURN = st.tuples(st.floats(0.1, 6.0), st.floats(0.0, 3.0))  # (serving, thinking) seconds


@settings(max_examples=40, deadline=None)
@given(
    clients=st.lists(
        st.tuples(st.sampled_from(["gpt-oss-20b", "qwen3.5-9b"]), st.lists(TURN, min_size=1, max_size=12)),
        min_size=1,
        max_size=4,
    )
)
def test_no_waiter_waits_longer_than_max_wait_plus_one_switch(
    clients: list[tuple[str, list[tuple[float, float]]]],
) -> None:
    """Any number of clients on two LLMs that never fit together: nobody starves, and nobody
    waits longer than ``max_wait_s`` plus one switch (drain the longest request, unload, load)."""
    bench.quiet()

    async def workload(run: bench.Run) -> None:
        async def client(model: str, turns: list[tuple[float, float]]) -> None:
            for serve, think in turns:
                await run.request(model, serve)
                await asyncio.sleep(think)

        await asyncio.gather(*(client(m, t) for m, t in clients))

    workload.__doc__ = "(random)"
    row = bench.replay(workload, "switch")
    assert len(row.waits) == sum(len(t) for _, t in clients)  # every request was served
    assert row.max_wait <= bench.MAX_WAIT_S + bench.longest_switch_s() + 1e-6


def test_the_warm_tier_cuts_switch_time_and_keeps_the_wait_bound() -> None:
    """Two alternating agents with both LLMs parkable: each switch back is an un-park (a PCIe
    copy) instead of a cold load, so less time goes to switching, and the bound still holds."""
    bench.quiet()
    policy, warm = bench.replay(bench.agents, "switch"), bench.replay(bench.agents, "warm")
    assert len(warm.waits) == len(policy.waits)
    assert warm.switch_s < policy.switch_s
    assert 1 - warm.switch_s / warm.length_s > 1 - policy.switch_s / policy.length_s
    assert warm.max_wait <= bench.MAX_WAIT_S + bench.longest_switch_s()
