"""Cold load vs un-park (the warm host-RAM tier): ``python -m bench.unpark`` prints one table.

Real engines through the real ``ResidencyController``: each model is swapped out for a tiny
second LLM and back, ``ROUNDS`` times, once with ``host_ram_budget_gb: 0`` (every swap back is a
load) and once with a host budget (the swap out parks, the swap back un-parks). Times are the
controller's own per-phase measurements (``costs``: what ``/metrics`` shows), medians of the
rounds.

Columns: *cold* — a load with the weights' files dropped from the page cache first
(``posix_fadvise(DONTNEED)``: a first load after boot, or after the cache was reclaimed);
*cached* — a load whose files are in the page cache (a reload soon after an unload: what
llama.cpp with GPU layers gets instead of a park); *park* and *un-park*; and the ratios
cold / un-park and cached / un-park. On this CPU-only host a transformers park moves nothing
(the weights are in RAM already) and a llama.cpp park keeps the loaded object, so an un-park
costs only bookkeeping: the ratio measures the load work the tier saves, not a device copy
(on a GPU an un-park is a host→device copy of the weights; ``bench.gpu`` is where that is
measured when a GPU is available).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmux.engines.factory import create_engine  # noqa: E402
from llmux.registry import ModelType, PhysicalModel, Registry  # noqa: E402
from llmux.registry.config import Limits  # noqa: E402
from llmux.residency.controller import ResidencyController  # noqa: E402

ROUNDS = 4
OTHER = "tiny-other"


def models(work: Path) -> dict[str, PhysicalModel]:
    from bench.chat_bench import smollm2
    from tests.fixtures.tiny_models import build_gguf, build_qwen35

    cpu = {"device": "cpu", "threads": 1}
    gguf = {"n_gpu_layers": 0, "n_ctx": 2048, "threads": 1}
    specs = {
        "qwen-big (transformers)": (
            "transformers",
            build_qwen35(work / "qwen-big", hidden=1024, layers=8, vocab_pad=32000),
            cpu,
        ),
        "smollm2 (llama.cpp)": ("llamacpp", smollm2(), gguf),
        "llama-big (llama.cpp)": ("llamacpp", build_gguf(work / "llama-big.gguf", embd=1024, layers=8), gguf),
        OTHER: ("transformers", build_qwen35(work / "other"), cpu),
    }
    return {
        mid: PhysicalModel(
            type=ModelType.LLM,
            backend=backend,
            weights=str(weights),
            vram_gb=1.0,
            id=mid,
            family="qwen3.5",
            options=options,
        )
        for mid, (backend, weights, options) in specs.items()
    }


def drop_page_cache(path: Path) -> None:
    """Evict a model's files from the page cache (no root needed for clean pages)."""
    for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def mean_s(controller: ResidencyController, model: str, phase: str) -> list[float]:
    stats = controller.costs.snapshot().get((model, phase))
    return [stats.total_s / stats.count] if stats else []


async def swaps(physical: dict[str, PhysicalModel], model: str, host_gb: float, cold: bool) -> dict[str, float]:
    registry = Registry(64.0, Path("/"), None, Limits(), physical, {}, host_ram_budget_gb=host_gb)
    controller = ResidencyController(registry, create_engine)
    times: dict[str, list[float]] = {"load": [], "park": [], "unpark": []}
    try:
        for _ in range(ROUNDS):
            if cold:
                drop_page_cache(Path(physical[model].weights))
            before = {p: controller.costs.snapshot().get((model, p)) for p in times}
            await controller.load(model)
            await controller.load(OTHER)  # one LLM at a time: the model leaves (parked or unloaded)
            after = controller.costs.snapshot()
            for phase in times:
                now, then = after.get((model, phase)), before[phase]
                if now and (then is None or now.count > then.count):
                    times[phase].append(now.total_s - (then.total_s if then else 0.0))
    finally:
        await controller.shutdown(grace_s=10)
    # The first round's load is a load in every mode; the rounds after it are what the mode does.
    return {phase: statistics.median(values[1:] or values) for phase, values in times.items() if values}


def size_gb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(f.stat().st_size for f in files) / 1e9


def fmt(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:,.1f} ms"


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    import transformers

    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        physical = models(Path(tmp))
        rows: list[tuple[str, float, float, float | None, float | None]] = []
        for model in [m for m in physical if m != OTHER]:
            cold = asyncio.run(swaps(physical, model, 0.0, cold=True))["load"]
            cached = asyncio.run(swaps(physical, model, 0.0, cold=False))["load"]
            warm = asyncio.run(swaps(physical, model, 32.0, cold=False))
            park, unpark = warm.get("park"), warm.get("unpark")
            rows.append((f"{model} {size_gb(Path(physical[model].weights)):.2f} GB", cold, cached, park, unpark))
    print(
        f"Cold load vs un-park, medians of {ROUNDS - 1} swaps back (CPU-only host, 2 shared cores: ratios, not seconds)"
    )
    print(
        f"{'model, files':<34}{'cold':>12}{'cached':>12}{'park':>12}{'un-park':>12}{'cold/un-park':>14}{'cached/un-park':>16}"
    )
    for model, cold, cached, park, unpark in rows:
        ratio = f"{cold / unpark:,.0f}×" if unpark else "–"
        cached_ratio = f"{cached / unpark:,.0f}×" if unpark else "–"
        print(
            f"{model:<34}{fmt(cold):>12}{fmt(cached):>12}{fmt(park):>12}{fmt(unpark):>12}{ratio:>14}{cached_ratio:>16}"
        )


if __name__ == "__main__":
    main()
