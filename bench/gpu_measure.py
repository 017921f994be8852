"""What ``bench.gpu`` measures on a loaded model, each as a small function: file reads cold and
warm, the numeric path the loaded modules really take, the cache a configured context needs,
time to first token, and concurrent chat clients through the chat pipeline."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from llmux.chat.events import ChatJob
from llmux.chat.pipeline import ChatRun
from llmux.engines.base import Prompted, SamplingParams
from llmux.protocol.chat import Message
from llmux.residency.controller import ResidencyController
from llmux.services.speedtest import PROMPT

# ---- files -------------------------------------------------------------------------------------


def weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


def drop_page_cache(files: list[Path]) -> bool:
    """Ask the kernel to forget the files' cached pages (they were fsynced when written), so the
    next read comes from the disk; False where that is refused. Some sandboxes accept and ignore
    it: the disk and cache bandwidths in the table show it."""
    try:
        for file in files:
            fd = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    except (OSError, AttributeError):
        return False
    return True


def read_seconds(files: list[Path], limit: int | None = None) -> tuple[float, int]:
    """Seconds to read the files (or their first ``limit`` bytes), and the bytes read."""
    started, done = time.perf_counter(), 0
    for file in files:
        with open(file, "rb", buffering=0) as f:
            while (limit is None or done < limit) and (chunk := f.read(16 << 20)):
                done += len(chunk)
    return time.perf_counter() - started, done


# ---- what ran ----------------------------------------------------------------------------------


def loaded_module(engine: Any) -> Any:
    """The torch module behind an engine (transformers engines), or None."""
    inner = getattr(engine, "inner", engine)
    return getattr(inner, "model", None) or getattr(inner, "_model", None)


def declared_quantisation(directory: Path) -> str | None:
    """The ``quant_method`` the checkpoint's config.json declares (transformers drops it from
    the loaded config when it dequantises, so it is read from the file)."""
    config = directory / "config.json"
    if not config.is_file():
        return None
    quant = json.loads(config.read_text()).get("quantization_config") or {}
    return quant.get("quant_method")


def numeric_path(engine: Any, *, declared: str | None, generation_error: str | None = None) -> str:
    """Which arithmetic the loaded model's modules really use, from their types and dtypes and
    the quantisation the checkpoint declared: never a silent fallback."""
    inner = getattr(engine, "inner", engine)
    if getattr(inner, "llm", None) is not None:  # llama.cpp
        import llama_cpp

        layers = getattr(getattr(inner, "options", None), "n_gpu_layers", None)
        where = "CUDA offload" if llama_cpp.llama_supports_gpu_offload() else "a CPU-only build: runs on the CPU"
        return f"GGUF Q8_0 via llama.cpp, n_gpu_layers={layers} ({where})"
    model = loaded_module(engine)
    if model is None or not hasattr(model, "modules"):
        return "n/a"
    kinds = Counter(type(m).__name__ for m in model.modules())
    dtypes = Counter(str(p.dtype).removeprefix("torch.") for p in model.parameters())
    method = declared
    main = ", ".join(f"{d}" for d, _ in dtypes.most_common(2))
    if kinds.get("FP8Linear"):
        kernel = fp8_kernel_state()
        path = f"FP8 weights in {kinds['FP8Linear']} FP8Linear; kernel: {kernel}"
    elif kinds.get("Mxfp4GptOssExperts"):
        path = f"MXFP4 kernels ({kinds['Mxfp4GptOssExperts']} Mxfp4GptOssExperts, Hub triton kernels)"
    elif method in ("fp8", "mxfp4"):
        path = f"DEQUANTISED {method} -> {main} fallback (quantised kernels unusable here)"
    else:
        path = f"{main}, no quantisation"
    if generation_error:
        path += f"; GENERATION FAILED: {generation_error[:160]}"
    return path


def fp8_kernel_state() -> str:
    """Which FP8 matmul kernel transformers has (DeepGEMM, the finegrained-fp8 Triton kernel
    from the Hub) — both are fetched at run time; offline, only a pre-fetched one exists."""
    try:
        from transformers.integrations import finegrained_fp8 as fp8
    except ImportError:
        return "unknown (transformers has no finegrained_fp8)"
    used = getattr(fp8, "_FINEGRAINED_FP8", None) is not None
    deepgemm = getattr(fp8, "is_deepgemm_loadable", lambda: False)
    try:
        deep = bool(deepgemm())
    except Exception:
        deep = False
    return f"finegrained-fp8 Triton {'loaded' if used else 'not loaded'}, DeepGEMM {'loadable' if deep else 'absent'}"


def cache_gb(model: Any, context: int) -> float | None:
    """KV cache (bf16) for ``context`` tokens of one sequence, plus the fixed recurrent state of
    linear-attention layers; None for a model without a text decoder config."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layer_types = list(getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers)
    heads, dim = (
        text.num_key_value_heads,
        getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads,
    )
    window = getattr(text, "sliding_window", None) or context
    total = 0.0
    for kind in layer_types:
        if kind == "linear_attention":
            v = text.linear_num_value_heads * text.linear_value_head_dim
            k = text.linear_num_key_heads * text.linear_key_head_dim
            total += 4 * text.linear_num_value_heads * text.linear_key_head_dim * text.linear_value_head_dim
            total += 2 * (2 * k + v) * (text.linear_conv_kernel_dim - 1)
        else:
            tokens = min(window, context) if kind == "sliding_attention" else context
            total += 2 * 2 * heads * dim * tokens
    return total / 1e9


# ---- the warm tier: park and un-park against a plain host->device copy -------------------------


def warm_swap_in(engine: Any, weight_bytes: int) -> tuple[float, float, float | None] | None:
    """Park the loaded engine in host RAM and un-park it (the warm tier's swap-in, called on the
    engine directly: the bench runs nothing else meanwhile), and time a pinned host->device copy
    of as many bytes as its weights: (park s, un-park s, copy s or None without CUDA). None when
    its runtime does not park (llama.cpp with GPU layers)."""
    inner = getattr(engine, "inner", engine)
    if not hasattr(inner, "park"):
        return None
    started = time.perf_counter()
    if inner.park() is None:
        return None
    park_s = time.perf_counter() - started
    started = time.perf_counter()
    inner.unpark()
    unpark_s = time.perf_counter() - started
    return park_s, unpark_s, _copy_s(weight_bytes)


def _copy_s(size: int) -> float | None:
    import torch

    if not torch.cuda.is_available() or size <= 0:
        return None
    source = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    target = torch.empty(size, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    started = time.perf_counter()
    target.copy_(source, non_blocking=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    del source, target
    torch.cuda.empty_cache()
    return seconds


# ---- time to first token: a recording wrapper around the engine -------------------------------


class Timed:
    """The engine the bench's factory hands the residency controller and the speed test: the
    real engine, untouched, except that each submitted job records its time to first token."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ttft_s: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def load(self) -> float | None:
        return self.inner.load()  # type: ignore[no-any-return]

    def unload(self) -> None:
        self.inner.unload()

    def submit(self, job: Any) -> Any:
        return _TimedGeneration(self.inner.submit(job), self.ttft_s)


class _TimedGeneration:
    def __init__(self, inner: Any, sink: list[float]) -> None:
        self._inner, self._sink, self._submitted = inner, sink, time.perf_counter()

    @property
    def stopped(self) -> asyncio.Future[None]:
        return self._inner.stopped  # type: ignore[no-any-return]

    async def batches(self) -> AsyncGenerator[list[Any], None]:
        inner = self._inner.batches()
        waiting = True
        try:
            async for batch in inner:
                if waiting and any(not isinstance(item, Prompted) for item in batch):
                    self._sink.append(time.perf_counter() - self._submitted)
                    waiting = False
                yield batch
        finally:
            await inner.aclose()


# ---- concurrent clients ------------------------------------------------------------------------


def chat_job(max_tokens: int) -> ChatJob:
    """The speed test's job: its prompt, greedy, a fixed seed."""
    return ChatJob(
        messages=[Message(role="user", content=PROMPT)],
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=0),
    )


async def clients(
    controller: ResidencyController, model: str, family: str | None, n: int, max_tokens: int
) -> tuple[float, float, int]:
    """``n`` chat turns at once, each leasing the model and running the chat pipeline like a
    request: (aggregate tokens/s, worst time to first token, tokens)."""
    started = time.perf_counter()

    async def one() -> tuple[float, int]:
        async with controller.lease(model) as lease:
            run = ChatRun(lease.engine, family, chat_job(max_tokens))
            async for _ in run.events():
                pass
            await run.stopped
            first = run.first_token_at or time.perf_counter()
            return first - started, run.completion_tokens

    results = await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - started
    tokens = sum(t for _, t in results)
    return tokens / wall, max(f for f, _ in results), tokens
