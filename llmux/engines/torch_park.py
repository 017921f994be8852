"""Parking a torch module in host RAM and bringing it back (``residency.park``), and the peak
device memory a model needs while it serves (``residency.slots.PeakAware``).

Parking is ``module.to("cpu")``: weights and buffers move, the Python objects (model, tokenizer,
processor, compiled grammars) stay, so un-parking is one ``module.to(device)`` — no disk read,
no initialisation. Where CUDA exists the host copies are pinned, so the copy back is a DMA at
full PCIe speed rather than a staged one. On a CPU-only host the module is in RAM already: the
park moves nothing.

The peak. The footprint measured at load is weights plus what the runtime allocates up front;
serving adds the KV cache and activations of each request, growing with its length. On CUDA
torch's allocator keeps a high-water mark: each generation resets it and reads it back, and the
growth over the generation's start, added to the load footprint, is the model's peak. The mark
is per process, so another model's work running at the same moment counts too: the peak errs
large, which only makes the planner keep more room. On a CPU there is no device: the process's
peak RSS is all that is measurable, and it spans every model and never falls, so it is not a
model's footprint — there the configured estimate (or the load measurement) stays.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def park_module(module: Any) -> float:
    """Move ``module`` to host RAM (pinned where CUDA exists); returns the GB it holds there."""
    module.to("cpu")
    if torch.cuda.is_available():
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            tensor.data = tensor.data.pin_memory()
        torch.cuda.empty_cache()
    return float(module.get_memory_footprint()) / 1e9


def unpark_module(module: Any, device: str) -> None:
    """Back onto ``device``; the pinned host copies are freed with the old tensors."""
    module.to(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


class PeakMeter:
    """The largest device footprint a model has needed since its load (CUDA only)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.load_gb: float | None = None
        self.peak_gb: float | None = None

    def loaded(self, footprint_gb: float | None) -> None:
        """After a load or un-park: start again from what it measured."""
        self.load_gb = self.peak_gb = footprint_gb if self.device.startswith("cuda") else None

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Around one generation: the allocator's high-water mark over its start is its growth."""
        if self.load_gb is None or not torch.cuda.is_available():
            yield
            return
        torch.cuda.reset_peak_memory_stats(self.device)
        start = torch.cuda.memory_allocated(self.device)
        try:
            yield
        finally:
            growth = max(torch.cuda.max_memory_allocated(self.device) - start, 0) / 1e9
            self.peak_gb = max(self.peak_gb or 0.0, self.load_gb + growth)
