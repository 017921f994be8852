"""The GPU-versus-CPU test of LLMUX-TST-020/021: the same small inference on both, the speed-up.

Runtime-agnostic: an engine takes its device from its ``options:`` in models.yaml, so the CPU
run is a second instance of the same engine built from the model's spec with the device
overridden (``CPU_OPTIONS``): ``device: cpu`` for transformers, chatterbox and faster-whisper,
``n_gpu_layers: 0`` for llama.cpp. The GPU run uses the resident model through the residency
controller (a lease; a chat run also takes its turn in the engine's queue like any request),
so the test never breaks the residency rules; the CPU copy lives in host RAM only while the
test runs. Chat runs go through the chat pipeline, the same path as a request.

Work per type, identical on both devices, after one untimed warm-up run on each (CUDA and Triton
compile their kernels on first use): chat generates ``max_tokens`` tokens at temperature 0 (rate:
tokens/s); ASR transcribes ``audio_s`` seconds of a fixed synthetic signal (rate: audio s/s); TTS
speaks a fixed sentence (rate: audio s/s).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from llmux.chat.events import ChatJob
from llmux.chat.pipeline import ChatRun
from llmux.engines.base import ASR_SAMPLE_RATE, SamplingParams, SpeakOptions, TranscribeOptions
from llmux.engines.worker import run_in_thread
from llmux.protocol.admin import REQUIRED_SPEEDUP, DeviceRun, SpeedTestReport, SpeedTestRequest
from llmux.protocol.chat import Message
from llmux.protocol.errors import InvalidRequest, LlmuxError
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.residency.controller import ResidencyController
from llmux.residency.slots import EngineFactory

CPU_OPTIONS: dict[str, dict[str, Any]] = {
    "transformers": {"device": "cpu"},
    "llamacpp": {"n_gpu_layers": 0},
    "chatterbox": {"device": "cpu"},
    "faster-whisper": {"device": "cpu"},
}
"""Backend name -> the options that put it on the CPU. Backends not listed have no GPU mode."""

PROMPT = "Explain in a few sentences how a bicycle stays upright while it is moving."
SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs back home."


class NoGpu(LlmuxError):
    status = 409
    type = "invalid_request_error"
    code = "no_gpu"


def gpu_present() -> bool:
    """A CUDA device is visible to this process (torch if installed, else the NVIDIA device node)."""
    try:
        import torch
    except ImportError:
        import os

        return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")
    return bool(torch.cuda.is_available())


def configured_for_cpu(spec: PhysicalModel) -> bool:
    options = spec.options
    return str(options.get("device", "")).startswith("cpu") or options.get("n_gpu_layers") == 0


def cpu_spec(spec: PhysicalModel) -> PhysicalModel:
    return msgspec.structs.replace(spec, options={**spec.options, **CPU_OPTIONS[spec.backend]})


class SpeedTest:
    def __init__(
        self,
        registry: Registry,
        controller: ResidencyController,
        factory: EngineFactory,
        *,
        gpu_probe: Callable[[], bool] = gpu_present,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.registry, self.controller, self.factory = registry, controller, factory
        self.gpu_probe, self.clock = gpu_probe, clock
        self._one_at_a_time = asyncio.Lock()  # two CPU copies at once would only measure contention

    def physical(self, name: str) -> PhysicalModel:
        if name in self.registry.physical:
            return self.registry.physical[name]
        return self.registry.resolve(name)[1]

    async def run(self, request: SpeedTestRequest) -> SpeedTestReport:
        """1. refuse what cannot be compared; 2. GPU run on the resident model; 3. CPU run on a
        CPU copy; 4. report."""
        spec = self.physical(request.model)
        self._check(spec)  # 1
        async with self._one_at_a_time:
            gpu = await self._on_gpu(spec, request)  # 2
            cpu = await self._on_cpu(spec, request)  # 3
        speedup = gpu.rate / cpu.rate if cpu.rate > 0 else math.inf
        return SpeedTestReport(
            model=spec.id,
            backend=spec.backend,
            type=spec.type.value,
            gpu=gpu,
            cpu=cpu,  # 4
            speedup=round(speedup, 2),
            passed=speedup >= REQUIRED_SPEEDUP,
        )

    def _check(self, spec: PhysicalModel) -> None:
        if not self.gpu_probe():
            raise NoGpu(
                "No GPU is present on this host (no CUDA device visible to llmux), so there is "
                "nothing to compare the CPU with. Run this test on the GPU host."
            )
        if spec.backend not in CPU_OPTIONS:
            raise InvalidRequest(
                f"backend {spec.backend!r} of model {spec.id!r} has no GPU mode to compare", param="model"
            )
        if configured_for_cpu(spec):
            raise InvalidRequest(
                f"model {spec.id!r} is configured to run on the CPU (options {spec.options}); "
                "its GPU run would be a CPU run",
                param="model",
            )

    async def _on_gpu(self, spec: PhysicalModel, request: SpeedTestRequest) -> DeviceRun:
        async with self.controller.lease(spec.id) as lease:
            return await self._timed("gpu", lease.engine, spec, request)

    async def _on_cpu(self, spec: PhysicalModel, request: SpeedTestRequest) -> DeviceRun:
        engine = self.factory(cpu_spec(spec), self.registry)
        await asyncio.to_thread(engine.load)
        try:
            return await self._timed("cpu", engine, spec, request)
        finally:
            await asyncio.to_thread(engine.unload)

    async def _timed(
        self, device: Literal["gpu", "cpu"], engine: Any, spec: PhysicalModel, request: SpeedTestRequest
    ) -> DeviceRun:
        """One warm-up, then the timed run."""
        await self._work(engine, spec, request, warm_up=True)
        started = self.clock()
        work, unit = await self._work(engine, spec, request, warm_up=False)
        return _run(device, self.clock() - started, work, unit)

    async def _work(
        self, engine: Any, spec: PhysicalModel, request: SpeedTestRequest, *, warm_up: bool
    ) -> tuple[float, str]:
        if spec.type is ModelType.LLM:
            run = ChatRun(engine, spec.family, _chat_job(4 if warm_up else request.max_tokens))
            async for _ in run.events():
                pass
            return float(run.completion_tokens), "tokens"
        workload = WORKLOADS[spec.type]
        return await run_in_thread(lambda _: workload(engine, request, warm_up=warm_up), name=f"speedtest-{spec.id}")


def _run(device: Literal["gpu", "cpu"], seconds: float, work: float, unit: str) -> DeviceRun:
    rate = work / seconds if seconds > 0 else math.inf
    return DeviceRun(device=device, seconds=round(seconds, 4), work=work, unit=unit, rate=round(rate, 3))


def _chat_job(max_tokens: int) -> ChatJob:
    return ChatJob(
        messages=[Message(role="user", content=PROMPT)],
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=0),
    )


# ---- speech workloads (blocking): (engine, request, warm_up) -> (work done, unit) -----------


def asr_workload(engine: Any, request: SpeedTestRequest, *, warm_up: bool) -> tuple[float, str]:
    import numpy as np  # installed with every ASR runtime; the core does not need it

    seconds = 1.0 if warm_up else request.audio_s
    t = np.arange(int(seconds * ASR_SAMPLE_RATE), dtype=np.float32) / ASR_SAMPLE_RATE
    # A fixed, speech-like signal: a vowel-ish harmonic stack, amplitude-modulated at syllable rate.
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220, 440, 880), 1))
    audio = ((0.2 * np.sin(2 * np.pi * 3 * t) + 0.3) * voice).astype(np.float32)
    engine.transcribe(audio, TranscribeOptions(language="en"), threading.Event())
    return seconds, "audio_s"


def tts_workload(engine: Any, request: SpeedTestRequest, *, warm_up: bool) -> tuple[float, str]:
    voice = engine.voices()[0].id
    text = "Hello." if warm_up else SENTENCE
    samples = sum(len(piece) for piece in engine.speak(text, voice, SpeakOptions(), threading.Event()))
    return round(samples / engine.sample_rate, 3), "audio_s"


def embedding_workload(engine: Any, request: SpeedTestRequest, *, warm_up: bool) -> tuple[float, str]:
    texts = [SENTENCE] * (1 if warm_up else 32)
    engine.embed(texts, threading.Event())
    return float(len(texts)), "inputs"


WORKLOADS: dict[ModelType, Callable[..., tuple[float, str]]] = {
    ModelType.ASR: asr_workload,
    ModelType.TTS: tts_workload,
    ModelType.EMBEDDING: embedding_workload,
}
