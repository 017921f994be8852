"""Sampling for llama.cpp sequences decoded in a batch: one native sampler chain per sequence.

The one place that maps ``SamplingParams`` onto llama.cpp samplers for the batched engine
(``llamacpp_batch``). It mirrors what ``Llama.generate`` builds for the serial engine (top-k
40, top-p, min-p 0.05, temperature, a seeded draw; greedy at temperature 0), so
``max_parallel`` changes throughput, not what a request samples. A sampling parameter added to
``SamplingParams`` goes in both places: here and in ``llamacpp_llm._sampling`` (top-k, min-p and
the penalties are; a job with a grammar or logprobs runs alone on the serial path instead,
``BatchDecoder.runs_alone``).
"""

from __future__ import annotations

from typing import Any

import llama_cpp
from llama_cpp._internals import LlamaSampler

from llmux.engines.base import SamplingParams

DEFAULT_TEMPERATURE = 0.8
TOP_K = 40
MIN_P = 0.05


def temperature_of(params: SamplingParams) -> float:
    return DEFAULT_TEMPERATURE if params.temperature is None else params.temperature


def top_p_of(params: SamplingParams) -> float:
    return 1.0 if params.top_p is None else params.top_p


PENALTY_LAST_N = 64
"""How many recent tokens the penalties look at (``Llama.generate``'s default)."""


def sampler_for(params: SamplingParams, n_vocab: int = 0) -> LlamaSampler:
    """A fresh chain for one sequence (its own random state); ``close()`` frees it."""
    sampler = LlamaSampler()  # type: ignore[no-untyped-call]  # llama-cpp-python leaves it unannotated
    penalties = (params.repetition_penalty, params.frequency_penalty, params.presence_penalty)
    if any(p is not None for p in penalties):
        repeat, frequency, presence = penalties
        sampler.add_penalties(n_vocab, PENALTY_LAST_N, repeat or 1.0, frequency or 0.0, presence or 0.0)
    temperature = temperature_of(params)
    if temperature <= 0:
        sampler.add_greedy()  # type: ignore[no-untyped-call]  # llama-cpp-python leaves it unannotated
        return sampler
    sampler.add_top_k(TOP_K if params.top_k is None else params.top_k)
    sampler.add_top_p(top_p_of(params), 1)
    sampler.add_min_p(MIN_P if params.min_p is None else params.min_p, 1)
    sampler.add_temp(temperature)
    sampler.add_dist(llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed)
    return sampler


def sample(sampler: LlamaSampler, ctx: Any, index: int) -> int:
    """The next token from the logits of batch position ``index`` (the chain also accepts it)."""
    return int(llama_cpp.llama_sampler_sample(sampler.sampler, ctx, index))
