"""The event hub's contract: publishing never waits, a reader that falls behind gets one resync
snapshot instead of the events it missed, and every reader sees ``seq`` in order."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from llmux.protocol.events import PinChanged, Snapshot
from llmux.protocol.residency import ModelStatus
from llmux.residency.events import EventHub


class View:
    budget_gb = 4.0
    swaps = 0
    used_gb = 0.0
    host_budget_gb = 0.0
    queue_depth = 0

    def status(self) -> list[ModelStatus]:
        return []


async def test_a_reader_that_falls_behind_gets_a_resync_snapshot() -> None:
    hub = EventHub(View(), maxsize=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    first = await slow.next(1)
    assert isinstance(first, Snapshot) and not first.resync and first.seq == 0
    assert isinstance(await fast.next(1), Snapshot)
    for i in range(5):  # publish never awaits: five events with nobody reading
        hub.publish(PinChanged(model=f"m{i}", pinned=True))
        assert isinstance(await fast.next(1), PinChanged)
    again = await slow.next(1)
    assert isinstance(again, Snapshot) and again.resync and again.seq == 5
    assert slow.dropped == 4
    hub.publish(PinChanged(model="after", pinned=False))
    after = await slow.next(1)
    assert isinstance(after, PinChanged) and after.seq == 6
    assert await slow.next(0.01) is None  # nothing more: the caller sends a keep-alive
    slow.close()
    assert hub.subscribers == {fast}


@given(st.lists(st.sampled_from(["publish", "read"]), max_size=60), st.integers(1, 5))
def test_what_a_reader_sees_is_in_order_and_never_skips_silently(steps: list[str], maxsize: int) -> None:
    async def run() -> None:
        hub = EventHub(View(), maxsize=maxsize)
        sub = hub.subscribe()
        seen: list[tuple[int, bool]] = []
        for step in [*steps, *["read"] * (maxsize + 2)]:
            if step == "publish":
                hub.publish(PinChanged(model="m", pinned=True))
            else:
                event = await sub.next(0)
                if event is not None:
                    seen.append((event.seq, isinstance(event, Snapshot)))
        assert seen[0][1]  # a snapshot first
        for (a, _), (b, snapshot) in zip(seen, seen[1:], strict=False):
            # the next seq exactly, or a snapshot that already includes everything up to b
            assert b == a + 1 or (snapshot and b > a)
        assert seen[-1][0] == hub.seq  # caught up in the end

    asyncio.run(run())


async def test_closing_the_hub_ends_a_waiting_reader_after_what_is_queued() -> None:
    hub = EventHub(View())
    sub = hub.subscribe()
    assert isinstance(await sub.next(1), Snapshot)
    waiting = asyncio.ensure_future(sub.next(60))
    await asyncio.sleep(0)
    hub.publish(PinChanged(model="m", pinned=True))
    assert isinstance(await waiting, PinChanged)
    hub.publish(PinChanged(model="m", pinned=False))
    waiting = asyncio.ensure_future(sub.next(60))
    hub.close()
    assert isinstance(await waiting, PinChanged)  # what was queued is still read
    assert await asyncio.wait_for(sub.next(60), 5) is None and sub.closed


async def test_closing_the_hub_wakes_a_reader_waiting_on_nothing() -> None:
    hub = EventHub(View())
    sub = hub.subscribe()
    assert isinstance(await sub.next(1), Snapshot)
    waiting = asyncio.ensure_future(sub.next(60))
    await asyncio.sleep(0)  # it waits now, with nothing queued
    hub.close()
    assert await asyncio.wait_for(waiting, 5) is None and sub.closed
