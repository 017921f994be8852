"""Continuous batching for a llama.cpp model: one decode thread, up to ``max_parallel``
sequences decoded together in one context (``options.max_parallel`` > 1).

Each sequence owns a slot: a llama.cpp sequence id with a KV stream of the model's full context
(allocated at load, so the measured footprint covers the peak). Every step builds one
``llama_batch``: the next token of each decoding sequence, then as many prompt tokens of
sequences still prefilling as the batch has room for (a long prompt goes in chunks between the
others' tokens instead of stalling them). One ``llama_decode``, then each sequence samples from
its own logits with its own sampler chain (``llamacpp_sampling``).

A sequence ends at end-of-generation, at its budget, or when its consumer leaves (checked after
every step); its slot goes to the next waiting job at once (``admission``: arrival order) but
keeps its KV cells: the next job whose prompt shares their prefix starts from there. A job whose
slot shares less of its prompt than another slot does (a new client, the same system prompt)
starts from a copy of that slot's KV stream.

Image prompts run alone, on slot 0, through the serial path (llama.cpp's multimodal helper
evaluates into the context itself); the KV cache is cleared around them. So do jobs that ask for
what the native sampler chains do not do: ``logprobs`` and a ``response_format`` grammar (the
serial path's ``Llama`` sampling has both), so ``max_parallel`` never takes a feature away.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import structlog

from llmux.engines.admission import common_prefix
from llmux.engines.base import Prompted, TextJob
from llmux.engines.batch_job import DecodeThread, QueuedJob
from llmux.engines.llamacpp_sampling import sample, sampler_for
from llmux.engines.text import Item, completion_budget
from llmux.protocol.errors import InvalidRequest

log = structlog.get_logger("llmux.engines")

COPY_GAIN = 16
"""Prompt tokens another slot must share beyond this slot's own prefix before its KV is copied."""


@dataclass(eq=False)
class _Sequence:
    job: QueuedJob
    slot: int
    pending: list[int]  # prompt tokens not yet evaluated
    pos: int
    budget: int
    sampler: Any
    next: int | None = None  # the last sampled token, evaluated in the next step
    produced: int = 0
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))


class BatchDecoder(DecodeThread):
    """The decode thread of one loaded model. ``serial`` runs an image job alone."""

    def __init__(
        self,
        llm: Any,
        *,
        slots: int,
        context: int,
        piece: Callable[[int], bytes],
        serial: Callable[[TextJob, threading.Event], Iterator[Item]],
        name: str,
    ) -> None:
        super().__init__(name, slots)
        self._llm, self._context, self._piece, self._serial = llm, context, piece, serial
        self._ctx = llm._ctx.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = llm._model.vocab
        self._batch_size = int(llm.n_batch)
        self._batch = llama_cpp.llama_batch_init(self._batch_size, 0, 1)
        self._cached: list[list[int]] = [[] for _ in range(slots)]  # what each slot's KV cells hold
        model = llm._model.model
        self._recurrent = bool(llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model))
        self._active: dict[int, _Sequence] = {}
        self._start()

    # ---- event loop ---------------------------------------------------------------------------

    def runs_alone(self, job: TextJob) -> bool:
        return super().runs_alone(job) or job.params.logprobs is not None or job.params.json_schema is not None

    def close(self) -> None:
        super().close()
        llama_cpp.llama_batch_free(self._batch)

    # ---- decode thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if not self._turn():
                    break
            except Exception as exc:  # a bug here fails the running sequences, not the thread
                log.exception("decode.failed", model=self._name)
                self._fail_all(exc, waiting=False)
                self._forget()
        self._fail_all(RuntimeError(f"{self._name} was unloaded"))

    def _turn(self) -> bool:
        """Admit what fits, then one decode step; False once closing."""
        with self._lock:
            while not (self._closing or self._active or self._admission.waiting):
                self._lock.wait()
            if self._closing:
                return False
            admitted = self._admission.admit(self._score)
        for job, slot in admitted:
            self._begin(job, slot)
        if self._active:
            self._step()
        return True

    def _score(self, job: QueuedJob, slot: int) -> int:
        return common_prefix(self._cached[slot], self._tokens(job))

    def _tokens(self, job: QueuedJob) -> list[int]:
        if job.tokens is None:
            job.tokens = self._llm.tokenize(job.job.prompt.encode("utf-8"), add_bos=False, special=True)
        return job.tokens

    def _begin(self, job: QueuedJob, slot: int) -> None:
        if job.channel.cancel.is_set():
            self._end(job, slot)
            return
        if self.runs_alone(job.job):
            self._alone(job, slot)
            return
        tokens = self._tokens(job)
        try:
            if not tokens:
                raise InvalidRequest("The prompt is empty.", param="messages")
            budget = completion_budget(job.job.params.max_tokens, len(tokens), self._context)
        except Exception as exc:
            job.channel.fail(exc)
            self._end(job, slot)
            return
        common = self._reuse(slot, tokens)
        job.channel.put(Prompted(len(tokens), budget, cached_tokens=common))
        self._active[slot] = _Sequence(
            job,
            slot,
            tokens[common:],
            common,
            budget,
            sampler_for(job.job.params, llama_cpp.llama_vocab_n_tokens(self._vocab)),
        )
        log.debug("sequence.started", model=self._name, slot=slot, prompt=len(tokens), cached=common)

    def _reuse(self, slot: int, tokens: list[int]) -> int:
        """Keep the longest cached prefix of ``tokens`` in ``slot`` (never the last token: its
        logits are needed); its length. A longer one in another slot, running or not (a new
        client, the same system prompt), is copied over first."""
        last = len(tokens) - 1
        common = min(common_prefix(self._cached[slot], tokens), last)
        donor = max(range(len(self._cached)), key=lambda s: common_prefix(self._cached[s], tokens))
        shared = min(common_prefix(self._cached[donor], tokens), last)
        if shared >= common + COPY_GAIN and not self._recurrent:
            # A copy between KV streams takes the whole stream; the donor's tail is cut after.
            llama_cpp.llama_memory_seq_rm(self._memory, slot, -1, -1)
            llama_cpp.llama_memory_seq_cp(self._memory, donor, slot, -1, -1)
            common = shared
        if not llama_cpp.llama_memory_seq_rm(self._memory, slot, common, -1):
            llama_cpp.llama_memory_seq_rm(self._memory, slot, -1, -1)  # recurrent state: all or nothing
            common = 0
        self._cached[slot] = tokens[:common]
        return common

    def _alone(self, job: QueuedJob, slot: int) -> None:
        """A job on the serial path (``runs_alone``), with the context to itself."""
        self._forget()
        try:
            self._serially(job, self._serial)  # the generator's own cleanup resets the context
        finally:
            self._forget()
            self._end(job, slot)

    def _forget(self) -> None:
        llama_cpp.llama_memory_clear(self._memory, True)
        self._cached = [[] for _ in self._cached]

    def _add(self, n: int, token: int, pos: int, slot: int, logits: bool) -> None:
        batch = self._batch
        batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
        batch.seq_id[n][0] = slot
        batch.logits[n] = logits

    def _step(self) -> None:
        n = 0
        outputs: list[tuple[_Sequence, int]] = []
        fed: list[tuple[_Sequence, list[int]]] = []
        for seq in self._active.values():  # decoding sequences first: their pace stays steady
            if seq.next is not None:
                self._add(n, seq.next, seq.pos, seq.slot, True)
                outputs.append((seq, n))
                fed.append((seq, [seq.next]))
                n += 1
        for seq in self._active.values():  # then prompt chunks, as room allows
            room = self._batch_size - n
            if room <= 0:
                break
            if seq.pending:
                chunk = seq.pending[:room]
                last = len(chunk) == len(seq.pending)
                for i, token in enumerate(chunk):
                    self._add(n, token, seq.pos + i, seq.slot, last and i == len(chunk) - 1)
                    n += 1
                if last:
                    outputs.append((seq, n - 1))
                fed.append((seq, chunk))
        self._batch.n_tokens = n
        status = llama_cpp.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed (status {status})")
        for seq, tokens in fed:
            seq.pos += len(tokens)
            self._cached[seq.slot].extend(tokens)
            if seq.next is None:
                del seq.pending[: len(tokens)]
            seq.next = None
        for seq, index in outputs:
            self._emit(seq, sample(seq.sampler, self._ctx, index))
        for seq in list(self._active.values()):
            if seq.job.channel.cancel.is_set():
                self._drop(seq)

    def _emit(self, seq: _Sequence, token: int) -> None:
        channel = seq.job.channel
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            channel.put(None)
            channel.end()
            self._drop(seq)
            return
        channel.put(seq.decoder.decode(self._piece(token)))
        seq.produced += 1
        if seq.produced >= seq.budget:
            channel.end()
            self._drop(seq)
        else:
            seq.next = token

    def _drop(self, seq: _Sequence) -> None:
        del self._active[seq.slot]
        seq.sampler.close()
        self._end(seq.job, seq.slot)

    def _fail_all(self, error: BaseException, *, waiting: bool = True) -> None:
        for seq in list(self._active.values()):
            seq.job.channel.fail(error)
            self._drop(seq)
        if not waiting:
            return
        with self._lock:
            queued = self._admission.drain()
        for job in queued:
            job.channel.fail(error)
            job.channel.finish()
