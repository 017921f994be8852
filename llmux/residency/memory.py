"""How much device memory a load really took.

The planner starts from the configured estimate; after a model's first load the measured
footprint replaces it. Measurement is the change in device-wide used memory around the load
(``torch.cuda.mem_get_info``), which also sees what llama.cpp allocates outside torch's
allocator. On a host without CUDA there is no VRAM to measure and the estimate stays.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
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


def measure(load: Callable[[], T]) -> tuple[T, float | None]:
    """Run ``load`` and return its result with the device memory it took (None if unknown)."""
    before = device_used_gb()
    result = load()
    after = device_used_gb()
    if before is None or after is None:
        return result, None
    return result, max(after - before, 0.0)
