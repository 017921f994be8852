"""How ``model.generate`` hands tokens to the consuming thread, and how it is told to stop."""

from __future__ import annotations

import queue
import threading
from typing import Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

DONE = object()


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
