"""The transformers engine's shared batch cache (``engines.transformers_batch_cache``), for any
interleaving of joins, decode steps and leaves: every row keeps exactly its own sequence's keys,
values and linear-attention states, right-aligned behind padding the mask hides, with no column
that is padding in every row."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from transformers.cache_utils import DynamicLayer, LinearAttentionLayer

from llmux.engines.transformers_batch_cache import BatchCache, batchable, sequence_bytes

HEADS, DIM = 2, 3


def prefilled(seq: int, length: int) -> SimpleNamespace:
    """A batch-1 cache of ``length`` tokens whose every number names its sequence."""
    full = DynamicLayer()
    full.lazy_initialization(torch.zeros(1), torch.zeros(1))
    full.keys = torch.full((1, HEADS, length, DIM), float(seq))
    full.values = torch.full((1, HEADS, length, DIM), float(-seq))
    linear = LinearAttentionLayer()
    linear.lazy_initialization(conv_states=torch.full((1, 4, 3), float(seq)), recurrent_states=torch.full((1, 2, 2), float(seq)))
    linear.conv_states[0] = torch.full((1, 4, 3), float(seq))
    linear.recurrent_states[0] = torch.full((1, 2, 2), float(seq))
    return SimpleNamespace(layers=[linear, full])


class BatchCacheMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.batch = BatchCache()
        self.seqs: list[int] = []  # the sequence in each row
        self.lengths: dict[int, int] = {}
        self.next = 1

    @rule(length=st.integers(1, 9))
    def join(self, length: int) -> None:
        seq = self.next
        self.next += 1
        assert self.batch.join(prefilled(seq, length), length) == len(self.seqs)
        self.seqs.append(seq)
        self.lengths[seq] = length

    @rule()
    def step(self) -> None:
        """What a decode step does: the model appends one column per row, then ``advance``."""
        if not self.seqs:
            return
        mask, positions = self.batch.step_inputs()
        assert positions[:, 0].tolist() == [self.lengths[s] for s in self.seqs]
        assert mask.shape == (len(self.seqs), self.batch.columns + 1)
        full = self.batch.cache.layers[1]
        column = torch.tensor(self.seqs, dtype=torch.float)[:, None, None, None].expand(-1, HEADS, 1, DIM)
        full.keys = torch.cat([full.keys, column], dim=2)
        full.values = torch.cat([full.values, -column], dim=2)
        self.batch.advance()
        for s in self.seqs:
            self.lengths[s] += 1

    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        keep = data.draw(st.lists(st.sampled_from(range(len(self.seqs))), unique=True)) if self.seqs else []
        keep.sort()
        self.batch.leave(keep)
        self.seqs = [self.seqs[r] for r in keep]

    @invariant()
    def each_row_holds_its_own_sequence(self) -> None:
        assert self.batch.rows == len(self.seqs)
        if not self.seqs:
            assert self.batch.cache is None
            return
        mask = self.batch.mask
        assert mask is not None and bool(mask[:, 0].any()), "a column of padding only"
        linear, full = self.batch.cache.layers
        for row, seq in enumerate(self.seqs):
            length = self.lengths[seq]
            assert mask[row].tolist() == [0] * (mask.shape[1] - length) + [1] * length
            assert bool((full.keys[row, :, -length:] == seq).all()) and bool((full.values[row, :, -length:] == -seq).all())
            assert bool((linear.conv_states[0][row] == seq).all()) and bool((linear.recurrent_states[0][row] == seq).all())
        assert full.keys.shape[2] == mask.shape[1]


TestBatchCache = BatchCacheMachine.TestCase
TestBatchCache.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_sliding_window_layers_are_not_batchable() -> None:
    from transformers.cache_utils import DynamicSlidingWindowLayer

    assert batchable(SimpleNamespace(layers=[DynamicLayer(), LinearAttentionLayer()])) is None
    assert "DynamicSlidingWindowLayer" in (batchable(SimpleNamespace(layers=[DynamicSlidingWindowLayer(8)])) or "")


def test_a_sequence_s_bytes_grow_with_its_context_but_not_its_states() -> None:
    cache = prefilled(1, 2)  # keys+values: 2 tokens x 2 x HEADS x DIM floats; states: 12 + 4 floats
    per_token = 2 * HEADS * DIM * 4
    assert sequence_bytes(cache, 2, 100) == (12 + 4) * 4 + 100 * per_token
