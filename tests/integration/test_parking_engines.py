"""What each real runtime does when parked (``residency.park``): the transformers engines keep
the loaded model in host RAM and answer the same after an un-park; llama.cpp keeps its ``Llama``
when its layers are on the CPU and declines (is unloaded) when they are on a GPU."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from llmux.engines.base import SamplingParams, TextJob, TranscribeOptions
from llmux.engines.factory import create_engine
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.registry.config import Limits
from tests.fixtures.tiny_models import QWEN_TOOL_SCRIPT, build_scripted_gguf, physical
from tests.support import tiny_cohere

pytestmark = pytest.mark.slow
import llama_cpp  # noqa: E402 -- a hard requirement of the suite: fail, never skip


def generate(engine: object, prompt: str) -> str:
    job = TextJob(prompt=prompt, params=SamplingParams(max_tokens=8, temperature=0))
    items = list(engine.generate(job, threading.Event()))  # type: ignore[attr-defined]
    return "".join(i for i in items[1:] if isinstance(i, str))


def test_llamacpp_with_cpu_layers_parks_by_keeping_the_loaded_object(tmp_path: Path) -> None:
    weights = build_scripted_gguf(tmp_path / "script.gguf", QWEN_TOOL_SCRIPT)
    registry, spec = physical(weights, backend="llamacpp", family="qwen3.5", n_gpu_layers=0, threads=1, n_ctx=512)
    engine = create_engine(spec, registry)
    engine.load()
    try:
        prompt = "<|im_start|>user\nread the app<|im_end|>\n<|im_start|>assistant\n"
        before = generate(engine, prompt)
        llm = engine.llm  # type: ignore[attr-defined]
        assert engine.park() == 0.0  # type: ignore[attr-defined]  # 0: "count my footprint"
        assert engine.unpark() is None  # type: ignore[attr-defined]
        assert engine.llm is llm  # type: ignore[attr-defined]  # nothing was reloaded
        assert generate(engine, prompt) == before and before.startswith("Let me look.")
    finally:
        engine.unload()


def test_llamacpp_with_gpu_layers_declines_to_park(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = build_scripted_gguf(tmp_path / "script.gguf", QWEN_TOOL_SCRIPT)
    registry, spec = physical(weights, backend="llamacpp", family="qwen3.5", n_gpu_layers=-1, threads=1, n_ctx=512)
    engine = create_engine(spec, registry)
    engine.load()
    try:
        # This build has no GPU; a CUDA build with layers offloaded cannot move them out and back.
        monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
        assert engine.park() is None  # type: ignore[attr-defined]
    finally:
        engine.unload()


def test_transformers_asr_answers_the_same_after_an_unpark(tmp_path: Path) -> None:
    tiny_cohere.build(tmp_path / "cohere-tiny")
    spec = PhysicalModel(type=ModelType.ASR, backend="transformers", weights="cohere-tiny", vram_gb=0.1,
                         id="cohere-tiny", options={"device": "cpu", "dtype": "float32"})
    registry = Registry(4.0, tmp_path, None, Limits(), {spec.id: spec}, {})
    engine = create_engine(spec, registry)
    engine.load()
    try:
        audio = np.random.default_rng(0).standard_normal(16_000).astype(np.float32) * 0.1
        options = TranscribeOptions(language="en")
        before = engine.transcribe(audio, options, threading.Event())  # type: ignore[attr-defined]
        host_gb = engine.park()  # type: ignore[attr-defined]
        assert host_gb is not None and host_gb > 0
        engine.unpark()  # type: ignore[attr-defined]
        assert engine.transcribe(audio, options, threading.Event()).text == before.text  # type: ignore[attr-defined]
    finally:
        engine.unload()
