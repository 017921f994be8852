"""Where a torch-based engine runs."""

from __future__ import annotations


def torch_device(requested: str) -> str:
    """``cuda`` (or ``cuda:N``) falls back to ``cpu`` on a host without a GPU, so one config
    serves both; anything else is used as given."""
    import torch

    if requested.startswith("cuda") and not torch.cuda.is_available():
        return "cpu"
    return requested
