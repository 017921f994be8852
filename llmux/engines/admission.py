"""Which waiting sequence runs in which slot: the pure bookkeeping of a batching engine.

A batching engine decodes up to ``slots`` sequences at once. Sequences are admitted in
arrival order (a long generation holds one slot, never more, so short ones behind it wait at
most for the first slot to free up); a sequence that leaves while it waits is withdrawn and
never runs; a finished one frees its slot at once. An *exclusive* job (an image prompt, which
llama.cpp's multimodal helper evaluates on a context of its own) waits until nothing runs and
holds back everything behind it until it is done, so arrival order still holds.

Among free slots, a job takes the one whose cached tokens share the longest prefix with its
prompt (``score``), so a conversation's next turn reuses its KV cache.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

J = TypeVar("J")


class Admission(Generic[J]):
    def __init__(self, slots: int, *, exclusive: Callable[[J], bool] = lambda _: False) -> None:
        if slots < 1:
            raise ValueError("a batching engine needs at least one slot")
        self.slots = slots
        self._exclusive = exclusive
        self._waiting: deque[J] = deque()
        self._running: dict[int, J] = {}
        self._alone: int | None = None
        """The slot of the exclusive job that runs now, if any."""

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def free(self) -> list[int]:
        return [slot for slot in range(self.slots) if slot not in self._running]

    def submit(self, job: J) -> None:
        self._waiting.append(job)

    def withdraw(self, job: J) -> bool:
        """Drop a job that still waits; False when it already runs (or never came)."""
        try:
            self._waiting.remove(job)
        except ValueError:
            return False
        return True

    def drain(self) -> list[J]:
        """Take every waiting job out (the engine is closing)."""
        waiting = list(self._waiting)
        self._waiting.clear()
        return waiting

    def admit(self, score: Callable[[J, int], int]) -> list[tuple[J, int]]:
        """Move waiting jobs into free slots, in arrival order, until none fits."""
        admitted: list[tuple[J, int]] = []
        while self._waiting and self._alone is None:
            job = self._waiting[0]
            free = self.free()
            if self._exclusive(job):
                if self._running:
                    break  # it waits for the running ones; nothing overtakes it
                self._alone = 0
            elif not free:
                break
            slot = 0 if self._alone is not None else max(free, key=lambda s: (score(job, s), -s))
            self._waiting.popleft()
            self._running[slot] = job
            admitted.append((job, slot))
        return admitted

    def finish(self, slot: int) -> J:
        """The job in ``slot`` is done (finished, failed or cancelled): the slot is free."""
        job = self._running.pop(slot)
        if self._alone == slot:
            self._alone = None
        return job


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two prompts share (a slot's score for a job)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
