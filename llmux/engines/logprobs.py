"""A generated token's log probability from its step's logits, the same way for every runtime:
a log-softmax over the model's scores for that step (before temperature and truncation), the
chosen token's value, and the ``top`` most likely tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from llmux.engines.base import TokenLogprob


def token_logprob(logits: Any, token: int, top: int, piece: Callable[[int], bytes]) -> TokenLogprob:
    """``logits``: one step's scores (any array-like of floats); ``piece``: a token's bytes."""
    scores = np.asarray(logits, dtype=np.float64)
    peak = float(np.max(scores))
    logprobs = scores - (peak + float(np.log(np.sum(np.exp(scores - peak)))))
    best: list[int] = []
    if top > 0:
        best = [int(i) for i in np.argpartition(-logprobs, min(top, len(logprobs) - 1))[:top]]
        best.sort(key=lambda i: -logprobs[i])
    return TokenLogprob(
        token=piece(token),
        logprob=float(logprobs[token]),
        top=tuple((piece(i), float(logprobs[i])) for i in best),
    )
