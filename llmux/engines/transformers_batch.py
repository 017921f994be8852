"""Continuous batching for a transformers model: one decode thread, up to ``max_parallel``
sequences decoded together in one forward pass (``options.max_parallel`` > 1).

**Approach: a batched decode loop of llmux's own over transformers' cache classes**, not
transformers' continuous-batching manager (``generate_batch`` / ``init_continuous_batching``,
paged attention). Checked with transformers 5.24: that manager gives the right greedy tokens for
a plain llama-style model, but rejects Qwen3.5 outright (``ValueError: Invalid layer type:
linear_attention``: its paged cache has no place for Gated DeltaNet states), and on a CPU it took
46 s for three 16-token greedy requests that ``generate`` answers in well under a second.
Qwen3.5 is the model this runtime serves, so the loop is ours:

- A joining sequence is prefilled **alone** (batch 1, its own ``DynamicCache``), in chunks of at
  most ``chunk`` prompt tokens per turn between the running sequences' decode steps, so a long
  prompt does not stall the others. Its first token is sampled from the prefill's logits; then
  its cache joins the batch (``transformers_batch_cache``: full-attention KV left-padded with a
  mask, linear-attention states concatenated on the batch dimension).
- Each decode step feeds every running sequence's last token (its own position, the shared
  padding mask) through the model once; each sequence then samples from its own row with its own
  processors and generator (``transformers_sampling.SequenceSampler``).
- A sequence ends at an end-of-generation token, at its budget, or when its consumer leaves
  (checked after every step and every prefill chunk); its row leaves the batch cache and its slot
  goes to the next waiting job (``admission``: arrival order).
- Prefix reuse: the model's one prompt snapshot (``transformers_prefix``) serves a joining
  prompt that extends it, and a prefill that passes a prompt's snapshot boundary stores a new one.
- Image prompts run alone through the serial path (``exclusive`` in ``admission``).

Greedy sequences give the same tokens batched as alone: padding columns are masked out and every
operation is row-wise; only the float rounding of a batch's matrix products differs from one
row's (log probabilities agree to ~1e-9; the tests check tokens on tiny llama and Qwen3.5 models).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
import torch

from llmux.engines.base import Prompted, TextJob
from llmux.engines.batch_job import DecodeThread, QueuedJob
from llmux.engines.text import Item
from llmux.engines.transformers_batch_cache import BatchCache
from llmux.engines.transformers_prefix import PrefixCache
from llmux.engines.transformers_sampling import Start

log = structlog.get_logger("llmux.engines")

CHUNK = 256
"""Prompt tokens prefilled per turn, between two decode steps of the running sequences."""


@dataclass(eq=False)
class _Sequence:
    job: QueuedJob
    slot: int
    start: Start
    cache: Any  # its own cache while it prefills; the batch's once it has joined
    pos: int  # prompt tokens in its cache
    next: int | None = None  # the last sampled token, fed in the next decode step
    produced: int = 0


class TransformersBatch(DecodeThread):
    """The decode thread of one loaded model."""

    def __init__(
        self,
        model: Any,
        *,
        slots: int,
        prefix: PrefixCache,
        prepare: Callable[[TextJob], Start],
        new_cache: Callable[[], Any],
        eos: set[int],
        serial: Callable[[TextJob, threading.Event], Iterator[Item]],
        name: str,
        chunk: int = CHUNK,
    ) -> None:
        self._model, self._prefix, self._prepare, self._new_cache = model, prefix, prepare, new_cache
        super().__init__(name, slots)
        self._eos, self._serial, self._chunk = eos, serial, chunk
        self._filling: list[_Sequence] = []  # prefilling alone, in arrival order
        self._rows: list[_Sequence] = []  # decoding, in the batch cache's row order
        self._batch = BatchCache()
        self._start()

    # ---- event loop ---------------------------------------------------------------------------

    # ---- decode thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                with torch.inference_mode():
                    if not self._turn():
                        break
            except Exception as exc:  # a bug here fails the running sequences, not the thread
                log.exception("decode.failed", model=self._name)
                self._fail_all(exc, waiting=False)
        self._fail_all(RuntimeError(f"{self._name} was unloaded"))

    def _turn(self) -> bool:
        """Admit what fits, one decode step, one prefill chunk; False once closing."""
        with self._lock:
            while not (self._closing or self._rows or self._filling or self._admission.waiting):
                self._lock.wait()
            if self._closing:
                return False
            admitted = self._admission.admit(lambda job, slot: 0)  # one snapshot per model: any slot
        for job, slot in admitted:
            self._begin(job, slot)
        if self._rows:
            self._decode()
        if self._filling:
            self._prefill()
        return True

    def _begin(self, job: QueuedJob, slot: int) -> None:
        if job.channel.cancel.is_set():
            self._end(job, slot)
            return
        if self.runs_alone(job.job):
            self._alone(job, slot)
            return
        try:
            start = self._prepare(job.job)
        except Exception as exc:  # a refused prompt (too long, bad schema): this job only
            job.channel.fail(exc)
            self._end(job, slot)
            return
        cached, cache = self._prefix.lookup(start.ids)
        job.channel.put(Prompted(len(start.ids), start.budget, cached_tokens=cached))
        self._filling.append(_Sequence(job, slot, start, self._new_cache() if cache is None else cache, cached))
        log.debug("sequence.started", model=self._name, slot=slot, prompt=len(start.ids), cached=cached)

    def _alone(self, job: QueuedJob, slot: int) -> None:
        """A job on the serial path (``runs_alone``), with the model to itself (admission saw to that)."""
        try:
            self._serially(job, self._serial)
        finally:
            self._end(job, slot)

    def _prefill(self) -> None:
        """Up to ``chunk`` prompt tokens of the sequences still prefilling, oldest first."""
        room = self._chunk
        for seq in list(self._filling):
            if room <= 0:
                break
            if seq.job.channel.cancel.is_set():
                self._filling.remove(seq)
                self._end(seq.job, seq.slot)
                continue
            ids = seq.start.ids
            boundary = self._prefix.boundary(len(ids))
            stop = min(len(ids), seq.pos + room, boundary if seq.pos < boundary else len(ids))
            out = self._model(
                input_ids=torch.tensor([ids[seq.pos : stop]], device=self._model.device),
                position_ids=torch.arange(seq.pos, stop, device=self._model.device)[None],
                cache=seq.cache,
                use_cache=True,
                logits_to_keep=1,
            )
            room -= stop - seq.pos
            seq.pos = stop
            if stop == boundary:
                self._prefix.store(ids[:boundary], seq.cache)  # a copy: this one goes on
            if stop == len(ids):
                self._filling.remove(seq)
                if self._emit(seq, seq.start.sampler.choose(out.logits[0, -1])):
                    self._batch.join(seq.cache, len(ids))
                    self._rows.append(seq)

    def _decode(self) -> None:
        """One token for every running sequence, in one forward pass."""
        mask, positions = self._batch.step_inputs()
        tokens = torch.tensor([[seq.next] for seq in self._rows], device=self._model.device)
        out = self._model(
            input_ids=tokens,
            position_ids=positions,
            attention_mask=mask,
            cache=self._batch.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self._batch.advance()
        logits = out.logits[:, -1]
        keep = [r for r, seq in enumerate(self._rows) if self._emit(seq, seq.start.sampler.choose(logits[r]))]
        if len(keep) < len(self._rows):
            self._batch.leave(keep)
            self._rows = [self._rows[r] for r in keep]

    def _emit(self, seq: _Sequence, token: int) -> bool:
        """Hand ``token`` to the consumer; False when the sequence has ended (its slot freed)."""
        channel = seq.job.channel
        if token in self._eos:
            channel.put(None)
            channel.end()
        else:
            channel.put(seq.start.piece(token))
            seq.produced += 1
            if seq.produced < seq.start.budget and not channel.cancel.is_set():
                seq.next = token
                return True
            channel.end()
        self._end(seq.job, seq.slot)
        return False

    def _fail_all(self, error: BaseException, *, waiting: bool = True) -> None:
        for seq in self._filling + self._rows:
            seq.job.channel.fail(error)
            self._end(seq.job, seq.slot)
        self._filling, self._rows, self._batch = [], [], BatchCache()
        if not waiting:
            return
        with self._lock:
            queued = self._admission.drain()
        for job in queued:
            job.channel.fail(error)
            job.channel.finish()
