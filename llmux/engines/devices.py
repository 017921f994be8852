"""Where a torch-based engine runs."""

from __future__ import annotations

from collections.abc import Callable

from llmux.residency.memory import measure


def torch_device(requested: str) -> str:
    """``cuda`` (or ``cuda:N``) falls back to ``cpu`` on a host without a GPU, so one config
    serves both; anything else is used as given."""
    import torch

    if requested.startswith("cuda") and not torch.cuda.is_available():
        return "cpu"
    return requested


def open_measured(open_: Callable[[], object], unload: Callable[[], None], threads: int | None) -> float | None:
    """Open a torch model and measure its footprint (None where not measurable); a failed open
    is unloaded, so it leaves nothing allocated. ``threads`` sets torch's one process-wide pool."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        _, footprint = measure(open_)
    except BaseException:
        unload()
        raise
    return footprint
