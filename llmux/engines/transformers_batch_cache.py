"""Many sequences in one transformers cache: join at a step boundary, leave at one.

A batched decode step feeds one token per sequence through the model with one ``DynamicCache``
whose batch dimension holds every running sequence. Their prompts differ in length, so the
full-attention keys and values are *left-padded* to a common length and a 2-D attention mask
(1 = a real token) marks the padding; positions stay each sequence's own (``positions``).
Linear-attention layers (Qwen3.5's Gated DeltaNet) keep a fixed-size convolution and recurrent
state per sequence, with no length at all: those are concatenated along the batch dimension.

- ``join(cache, length)``: a sequence with a cache of its own (batch 1) becomes the last row; whichever
  side is shorter is padded on the left.
- ``split(cache, pads)``: the rows of a batch prefilled together (left-padded, ``pads`` columns
  each) as batch-1 caches of their own, the padding cut, ready to continue or ``join``.
- ``leave(rows)``: the rows kept are selected (``index_select`` on the batch dimension), and
  columns that are padding in every remaining row are cut, so a long prompt that has left does
  not keep the others' attention wide.

Supported layers: ``DynamicLayer`` (full attention) and ``LinearAttentionLayer``. Sliding-window
layers (gpt-oss) keep only their window, offset per sequence, and are not batched here
(``batchable`` says so before a model is given to the batching engine).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer, LinearAttentionLayer


def batchable(cache: Any) -> str | None:
    """None when every layer of ``cache`` can be joined and split here; else why not. Exact
    types: the hybrid layer classes that combine these two (and sliding windows) are not."""
    for layer in cache.layers:
        if type(layer) not in (DynamicLayer, LinearAttentionLayer):
            return f"{type(layer).__name__} layers cannot be batched"
    return None


def _states(layer: Any) -> list[dict[int, Any]]:
    """A linear-attention layer's per-sequence states (None where a state is unused)."""
    return [layer.conv_states, layer.recurrent_states]


def _pad_left(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    if columns == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def split(cache: Any, pads: list[int]) -> list[Any]:
    """Row ``r`` of ``cache`` (a batch prefilled together, its row left-padded by ``pads[r]``
    columns) as a cache of its own: the same layer objects' structure, this row's tensors, the
    padding columns cut. Linear-attention states need no cut: padding left them untouched."""
    shared = {id(t): t for layer in cache.layers for t in _tensors(layer)}
    rows = []
    for r, pad in enumerate(pads):
        own = copy.deepcopy(cache, memo=dict(shared))  # new containers around the same tensors
        _select(own, torch.tensor([r], dtype=torch.long, device=_device(cache)), pad)
        rows.append(own)
    return rows


def _select(cache: Any, rows: torch.Tensor, first: int) -> None:
    """Keep only ``rows`` of ``cache`` (new tensors: whoever shares the old ones keeps them), and
    of the full-attention keys and values only the columns from ``first`` on."""
    layer: Any
    for layer in cache.layers:
        if isinstance(layer, LinearAttentionLayer):
            for states in _states(layer):
                for i, state in states.items():
                    if state is not None:
                        states[i] = state.index_select(0, rows)
        else:
            layer.keys = layer.keys.index_select(0, rows)[:, :, first:]
            layer.values = layer.values.index_select(0, rows)[:, :, first:]


def _tensors(layer: Any) -> list[torch.Tensor]:
    if isinstance(layer, LinearAttentionLayer):
        return [state for states in _states(layer) for state in states.values() if state is not None]
    return [t for t in (layer.keys, layer.values) if t is not None]


def _device(cache: Any) -> Any:
    return next((t.device for layer in cache.layers for t in _tensors(layer)), "cpu")


class BatchCache:
    """The running sequences' shared cache, its padding mask and each row's next position."""

    def __init__(self) -> None:
        self.cache: Any = None
        self.mask: torch.Tensor | None = None
        """(rows, columns) int64: 1 where a column holds a real token of that row."""
        self.positions: list[int] = []
        """Each row's next position: how many real tokens it holds."""

    @property
    def rows(self) -> int:
        return len(self.positions)

    @property
    def columns(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def join(self, cache: Any, length: int) -> int:
        """Append a sequence with a cache of its own (holding ``length`` tokens); its row index."""
        device = _device(cache)
        own = torch.ones((1, length), dtype=torch.long, device=device)
        if self.cache is None or self.mask is None:
            self.cache, self.mask, self.positions = cache, own, [length]
            return 0
        width = max(self.columns, length)
        grow, pad = width - self.columns, width - length
        mine: Any
        theirs: Any
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            if isinstance(mine, LinearAttentionLayer):
                for ours, new in zip(_states(mine), _states(theirs), strict=True):
                    for i, state in ours.items():
                        if state is not None:
                            ours[i] = torch.cat([state, new[i]], dim=0)
            else:
                mine.keys = torch.cat([_pad_left(mine.keys, grow, 2), _pad_left(theirs.keys, pad, 2)], dim=0)
                mine.values = torch.cat([_pad_left(mine.values, grow, 2), _pad_left(theirs.values, pad, 2)], dim=0)
        self.mask = torch.cat([_pad_left(self.mask, grow, 1), _pad_left(own, pad, 1)], dim=0)
        self.positions.append(length)
        return self.rows - 1

    def leave(self, keep: list[int]) -> None:
        """Keep only the rows ``keep`` (in that order); the others' cache is gone."""
        if not keep:
            self.cache, self.mask, self.positions = None, None, []
            return
        assert self.mask is not None
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        first = int(used[0]) if used.numel() else mask.shape[1]
        _select(self.cache, index, first)
        self.mask = mask[:, first:]
        self.positions = [self.positions[r] for r in keep]

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention mask incl. this step's column, position ids) for one token per row."""
        assert self.mask is not None
        mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        positions = torch.tensor(self.positions, dtype=torch.long, device=self.mask.device)[:, None]
        return mask, positions

    def advance(self) -> None:
        """The step ran: every row holds one more real token."""
        assert self.mask is not None
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)
        self.positions = [p + 1 for p in self.positions]


def sequence_bytes(cache: Any, tokens: int, context: int) -> int:
    """Bytes one sequence of ``context`` tokens takes in a cache like ``cache`` (batch 1, holding
    ``tokens`` tokens): keys and values grow with its length, linear-attention states do not."""
    per_token, fixed = 0.0, 0
    for layer in cache.layers:
        if isinstance(layer, LinearAttentionLayer):
            for states in _states(layer):
                fixed += sum(state.nbytes for state in states.values() if state is not None)
        elif getattr(layer, "keys", None) is not None:
            per_token += (layer.keys.nbytes + layer.values.nbytes) / tokens
    return int(fixed + per_token * context)
