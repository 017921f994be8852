"""How much device memory a load really took, and whether the device has room for the next.

The planner starts from the configured estimate; after a model's first load the measured
footprint replaces it. Measurement is the change in device-wide used memory around the load
(``torch.cuda.mem_get_info``), which also sees what llama.cpp allocates outside torch's
allocator. On a host without CUDA there is no VRAM to measure and the estimate stays.

Before a load (``wait_for_room``) the planner's budget arithmetic is checked against the device:
freed memory can take a moment to reappear after an unload (the allocator returning blocks, a
runtime's threads exiting), and another process may hold some. So the load waits, bounded, until
the device has the target's footprint plus a headroom free.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def device_used_gb(device: int = 0) -> float | None:
    """Used memory on a CUDA device in GB, or None without torch/CUDA.

    Only looks at torch if something already imported it: the core never imports torch.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(device)
    return float(total - free) / 1e9


def device_free_gb(device: int = 0) -> float | None:
    """Free memory on a CUDA device in GB, or None without torch/CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return float(free) / 1e9


async def wait_for_room(
    need_gb: float,
    free_gb: Callable[[], float | None],
    sleep: Callable[[float], Awaitable[None]],
    *,
    polls: int = 50,
    every_s: float = 0.1,
) -> float | None:
    """Wait until the device has ``need_gb`` free, polling at most ``polls`` times ``every_s``
    apart; returns the last reading (None without CUDA: nothing to wait for)."""
    free = free_gb()
    for _ in range(polls):
        if free is None or free >= need_gb:
            return free
        await sleep(every_s)
        free = free_gb()
    return free


def measure(load: Callable[[], T]) -> tuple[T, float | None]:
    """Run ``load`` and return its result with the device memory it took (None if unknown)."""
    before = device_used_gb()
    result = load()
    after = device_used_gb()
    if before is None or after is None:
        return result, None
    return result, max(after - before, 0.0)
