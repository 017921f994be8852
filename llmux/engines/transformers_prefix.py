"""Prefix caching for the transformers engine: the next prompt that starts with the tokens of
the last one's prefix starts from a copy of their cache instead of computing them again.

transformers' cache classes cannot be cut back to an arbitrary shorter prefix for the models
served here (Qwen3.5's linear-attention layers keep a recurrent state, gpt-oss's sliding-window
layers drop old keys), so the cache is *snapshotted* while the prompt is prefilled: the prompt's
first ``boundary`` tokens (a multiple of ``BLOCK``, at least ``TAIL`` short of its end, so the
last message — a new question under the same system prompt — usually lies after it) are
computed first, the cache is copied, then generation continues from it. A later prompt that starts with those same
tokens — the same system prompt and history, the next turn of a conversation — reuses the copy
and computes only the rest. One snapshot per model (the most recent), like a conversation's
KV cache in llama.cpp. Prompts with images are never cached (their positions hold no tokens).
"""

from __future__ import annotations

import copy
from typing import Any

BLOCK = 64
"""Snapshot granularity in tokens."""
TAIL = 64
"""Tokens at a prompt's end never snapshotted: where the next prompt most likely differs."""


class PrefixCache:
    def __init__(self, block: int = BLOCK, tail: int = TAIL) -> None:
        self.block, self.tail = block, tail
        self._ids: list[int] = []
        self._cache: Any = None

    def boundary(self, prompt_tokens: int) -> int:
        """Where a prompt of this length is snapshotted (0: too short to bother)."""
        return max(0, (prompt_tokens - self.tail) // self.block * self.block)

    def lookup(self, ids: list[int]) -> tuple[int, Any]:
        """(tokens reused, a private copy of their cache) when ``ids`` extends the snapshot;
        (0, None) otherwise."""
        n = len(self._ids)
        if self._cache is None or n == 0 or n >= len(ids) or ids[:n] != self._ids:
            return 0, None
        return n, copy.deepcopy(self._cache)

    def store(self, ids: list[int], cache: Any) -> None:
        self._ids = list(ids)
        self._cache = copy.deepcopy(cache)

    def clear(self) -> None:
        self._ids, self._cache = [], None
