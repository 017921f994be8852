"""How the transformers engine's tokens become text, and how its ``generate`` thread is steered:
``Detokenizer`` (token ids to text deltas, shared by the serial and the batched path),
``QueueStreamer`` (``generate``'s tokens to the consuming thread) and ``Halt`` (a cancel flag
as a stopping criterion, seen every token)."""

from __future__ import annotations

import queue
import threading
from typing import Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

DONE = object()
"""The end of ``generate``'s tokens in a ``QueueStreamer``."""


class Halt(StoppingCriteria):
    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        return torch.full(  # type: ignore[return-value]  # a bool tensor; torch's stubs have no BoolTensor constructor
            (input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device
        )


class QueueStreamer(BaseStreamer):
    """Token ids from ``generate`` to the consuming thread; the first ``put`` is the prompt."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.queue.put(token)

    def end(self) -> None:
        self.queue.put(DONE)


class Detokenizer:
    """Token ids -> text deltas. Decodes a short window, never the whole output, and holds
    back a piece that ends inside a multi-byte character."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))

    def push(self, token: int) -> str:
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]
