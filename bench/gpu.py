"""The proof on a GPU: ``python -m bench.gpu`` builds random-weight checkpoints of the reference
models at full size (``bench.gpu_models``), loads each through llmux's own residency controller
and engines, measures it, and prints one table. ``--tiny`` runs the same code with small
configurations on a CPU (the test suite does, so the command never rots).

Per model, in this order, as the time budget allows (rows say what was skipped and why):
1. build the checkpoint (disk space checked first), fsync it, drop it from the page cache;
2. load it through ``ResidencyController`` (a cold load, from disk), then read its files from
   disk and from the page cache: load time against read time;
3. footprint: measured by the controller (device memory around the load) against the
   models.yaml estimate and against weights + the cache for the configured context;
4. the admin speed test (``SpeedTest``: the same short job on the GPU and on a CPU copy),
   with the time to first token on each, and the speed-up (TST-020/021 require 5x);
5. which numeric path the loaded modules take (FP8 kernels, MXFP4 kernels, or a dequantised
   fallback), read from the modules themselves;
6. 1, 4 and 8 concurrent chat clients (``ChatRun`` under a lease each);
7. TTS: Chatterbox's real-time factor (TST-022).
Swap-in: the cold load, then the warm tier's (park in host RAM, un-park) against a pinned
host->device copy of the weights (the issue's target: an un-park within 1.2x of that copy); on
a CPU there is no copy to compare with, so that part says pending.

The temporary directory is removed at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GPU host has no network: never try to fetch
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from bench import gpu_gguf  # noqa: E402
from bench import gpu_measure as m  # noqa: E402
from bench import gpu_models as g  # noqa: E402
from llmux.registry import ModelType, PhysicalModel, Registry, load_models  # noqa: E402
from llmux.residency.controller import ResidencyController  # noqa: E402

BUDGET_S = 480
DISK_SAMPLE = 2 << 30  # bytes read from disk to measure its bandwidth
REFERENCE_BUDGET_GB = 16.0  # the reference deployment's GPU (config/models.yaml budget_gb)


def _text(tiny: bool) -> dict[str, object]:
    return dict(g.TINY_QWEN["text"] if tiny else g.QWEN35_9B["text"])


def _ctx(tiny: bool) -> int:
    return 4096 if tiny else 32768


@dataclass(frozen=True)
class Plan:
    id: str
    """The physical model in config/models.yaml whose options and estimate are used."""
    build: Callable[[Path, Path, bool], g.Built]
    """(model dir, voices dir, tiny) -> the checkpoint."""
    cost_s: float
    """Rough full-size cost on an H100/H200 (build, load, speed test, clients), for skipping."""
    disk_gb: float
    tiny: bool = True
    """Part of ``--tiny``."""
    weights: str = ""
    """The weights path under the model dir when it is a file (a GGUF); the dir itself if empty."""
    options: dict[str, object] | None = None
    """Options replacing models.yaml's (a GGUF built without its vision encoder has no mmproj)."""


PLANS = [
    Plan(
        "qwen3.5-9b-fp8",
        lambda d, v, tiny: g.build_qwen35(d, g.TINY_QWEN if tiny else g.QWEN35_9B, fp8=True),
        110,
        12.6,
    ),
    Plan("gpt-oss-20b", lambda d, v, tiny: g.build_gpt_oss(d, g.TINY_GPT_OSS if tiny else g.GPT_OSS_20B), 150, 13.9),
    Plan(
        "qwen3.5-9b-fp8-uncensored",
        lambda d, v, tiny: g.Built(d, gpu_gguf.build_qwen35_gguf(d / "model.gguf", _text(tiny), context=_ctx(tiny))),
        90,
        10.0,
        weights="model.gguf",
        options={"n_gpu_layers": -1, "n_ctx": 32768},
    ),
    Plan("qwen3.5-4b", lambda d, v, tiny: g.build_qwen35(d, g.TINY_QWEN if tiny else g.QWEN35_4B, fp8=False), 80, 9.9),
    Plan(
        "cohere-transcribe", lambda d, v, tiny: g.build_cohere_asr(d, g.TINY_COHERE if tiny else g.COHERE_ASR), 40, 4.2
    ),
    Plan("chatterbox", lambda d, v, tiny: g.build_chatterbox(d, v), 100, 3.4, tiny=False),
]


class Bench:
    def __init__(self, work: Path, tiny: bool, budget_s: float, out: Path | None = None) -> None:
        self.work, self.tiny, self.out = work, tiny, out
        self.deadline = time.monotonic() + budget_s
        self.rows: list[list[str]] = []
        self.only: set[str] = set()
        self.engines: dict[tuple[str, str], m.Timed] = {}
        self.gpu = _cuda()
        reference = load_models(ROOT / "config" / "models.yaml")
        physical = {p.id: self._spec(reference.physical[p.id], p) for p in PLANS}
        budget = self.gpu[1] if self.gpu else 64.0  # measure everything; fit to 16 GB is a column
        self.registry = Registry(
            budget_gb=budget,
            models_dir=work / "models",
            voices_dir=work / "voices",
            limits=reference.limits,
            physical=physical,
            virtual={},
        )
        self.controller = ResidencyController(self.registry, self.factory)

    def _spec(self, spec: PhysicalModel, plan: Plan) -> PhysicalModel:
        """models.yaml's spec with the built weights; in a full run the transformers LLMs' CPU
        copies use bf16 (the GPU side is bf16 either way), halving the CPU copy's RAM and load."""
        options = dict(spec.options if plan.options is None else plan.options)
        if spec.backend == "transformers" and spec.type is ModelType.LLM and not self.tiny:
            options.setdefault("dtype", "bfloat16")
        if spec.backend == "llamacpp" and self.tiny:
            options["n_ctx"] = _ctx(True)
        weights = f"{plan.id}/{plan.weights}" if plan.weights else plan.id
        return msgspec.structs.replace(spec, weights=weights, options=options)

    def factory(self, spec: PhysicalModel, registry: Registry) -> m.Timed:
        from llmux.engines.factory import create_engine
        from llmux.services.speedtest import configured_for_cpu

        engine = m.Timed(create_engine(spec, registry))
        self.engines[(spec.id, "cpu" if configured_for_cpu(spec) else "gpu")] = engine
        return engine

    def row(self, model: str, measure: str, result: str, note: str = "") -> None:
        self.rows.append([model, measure, result, note])
        print(f"  {model}: {measure}: {result}  {note}", file=sys.stderr, flush=True)
        if self.out is not None:  # a run killed at its time limit still leaves what it measured
            self.out.write_text(table(self.rows) + "\n")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    # ---- one model ------------------------------------------------------------------------

    async def model(self, plan: Plan) -> None:
        cost = 0 if self.tiny else plan.cost_s
        need_gb = 0.1 if self.tiny else plan.disk_gb
        free_gb = shutil.disk_usage(self.work).free / 1e9
        if self.tiny and not plan.tiny:
            self.row(plan.id, "skipped", "not in --tiny", "from_local always builds the full-size model")
            return
        if plan.weights.endswith(".gguf") and (reason := _no_llama_gpu(self.tiny)):
            self.row(plan.id, "skipped", reason, "no GGUF built: TST-021 unmeasured")
            return
        if missing := _missing_runtime(self.registry.physical[plan.id].backend):
            self.row(plan.id, "skipped", f"{missing} is not installed", "the runtime this backend needs")
            return
        if self.left() < cost:
            self.row(plan.id, "skipped", "time budget", f"needs ~{cost:.0f} s, {self.left():.0f} s left")
            return
        if free_gb < need_gb + 1:
            self.row(plan.id, "skipped", "disk", f"needs {need_gb:.1f} GB, {free_gb:.1f} GB free")
            return
        directory = self.work / "models" / plan.id
        try:
            await self._measure(plan, directory)
        except Exception as exc:
            self.row(plan.id, "FAILED", type(exc).__name__, str(exc)[:200])
        finally:
            shutil.rmtree(directory, ignore_errors=True)  # the next model needs the disk

    async def _measure(self, plan: Plan, directory: Path) -> None:
        spec = self.registry.physical[plan.id]
        started = time.perf_counter()
        built = await asyncio.to_thread(_build, plan, directory, self.work / "voices", self.tiny)
        build_s = time.perf_counter() - started
        files = m.weight_files(directory)
        size = sum(f.stat().st_size for f in files)
        self.row(
            plan.id,
            "build",
            f"{_size(size)} in {build_s:.1f} s",
            f"{_size(built.bytes)} of weights, {len(files)} files",
        )

        cold = m.drop_page_cache(files)  # 2: a cold load, as after a reboot
        started = time.perf_counter()
        await self.controller.load(plan.id)
        load_s = time.perf_counter() - started
        cache_s, _ = m.read_seconds(files)  # the load left the files in the page cache
        m.drop_page_cache(files)
        sample_s, sampled = m.read_seconds(files, limit=DISK_SAMPLE)  # bandwidth, not a second full pass
        disk_s = sample_s * size / max(sampled, 1)
        self.row(
            plan.id,
            "load vs read",
            f"load {load_s:.2f} s; read {disk_s:.2f} s disk, {cache_s:.2f} s cache",
            f"load/read(disk) {load_s / disk_s:.2f}x; {size / disk_s / 1e9:.2f} GB/s disk "
            f"({_size(sampled)} sampled), {size / cache_s / 1e9:.2f} GB/s cache",
        )
        swap = "cold load" if cold else "load (page cache could not be dropped)"
        self.row(plan.id, "swap-in", f"{swap} {load_s:.2f} s", "the warm tier's swap-in is the next row")
        self._warm(plan.id, load_s, built.bytes)
        self._footprint(plan.id, spec, built)

        error = None
        if spec.type is not ModelType.TTS:
            error = await self._speedtest(plan.id, spec)
        path = m.numeric_path(
            self.engines[(plan.id, "gpu")], declared=m.declared_quantisation(directory), generation_error=error
        )
        self.row(plan.id, "numeric path", path)
        if spec.type is ModelType.LLM and error is None:
            for n in (1, 4, 8):
                if self.left() < (0 if self.tiny else 10 * n):
                    self.row(plan.id, f"{n} client{'s' if n > 1 else ''}", "skipped", "time budget")
                    continue
                tps, worst, tokens = await m.clients(self.controller, plan.id, spec.family, n, self.max_tokens)
                self.row(
                    plan.id,
                    f"{n} client{'s' if n > 1 else ''}",
                    f"{tps:.1f} tok/s aggregate",
                    f"{tokens} tokens; slowest first token {worst * 1000:.0f} ms",
                )
        if spec.type is ModelType.TTS:
            await self._tts(plan.id)

    def _warm(self, model: str, load_s: float, weight_bytes: int) -> None:
        warm = m.warm_swap_in(self.engines[(model, "gpu")], weight_bytes)
        if warm is None:
            self.row(
                model,
                "swap-in warm",
                "not parkable",
                "an eviction unloads (llama.cpp: its file stays in the page cache)",
            )
            return
        park_s, unpark_s, copy_s = warm
        result = f"un-park {unpark_s:.3f} s; cold/un-park {load_s / max(unpark_s, 1e-6):.0f}x"
        if copy_s is None:
            self.row(model, "swap-in warm", result, f"park {park_s:.3f} s; warm tier: pending a GPU (no copy here)")
            return
        self.row(
            model,
            "swap-in warm",
            result,
            f"park {park_s:.2f} s; host->device copy {copy_s:.2f} s: un-park/copy {unpark_s / copy_s:.2f}x "
            "(target <= 1.2x)",
        )

    @property
    def max_tokens(self) -> int:
        return 8 if self.tiny else 32

    def _footprint(self, model: str, spec: PhysicalModel, built: g.Built) -> None:
        status = next(s for s in self.controller.status() if s.id == model)
        engine = self.engines[(model, "gpu")]
        preallocated = getattr(engine.inner, "llm", None) is not None  # llama.cpp allocates its cache at load
        if preallocated:
            context, module = engine.inner.llm.n_ctx(), SimpleNamespace(config=SimpleNamespace(**_text(self.tiny)))
        else:
            context, module = getattr(engine.inner, "context", 0), m.loaded_module(engine)
        cache = m.cache_gb(module, context) if context else None
        computed = f"{_size(built.bytes)} weights" + (
            f" + {_size(cache * 1e9)} cache @{context} tokens" if cache is not None else ""
        )
        measured = f"{status.vram_gb:.2f} GB measured" if status.measured else "not measured (no CUDA)"
        fits = (
            ""
            if not status.measured
            else (
                "; fits the 16 GB reference GPU"
                if status.vram_gb + (0 if preallocated else cache or 0) <= REFERENCE_BUDGET_GB
                else "; does NOT fit the 16 GB reference GPU with its cache"
            )
        )
        self.row(
            model,
            "footprint",
            f"{measured}; models.yaml {spec.vram_gb:g} GB",
            f"computed {computed} (1 sequence: max_parallel 1){fits}",
        )

    async def _speedtest(self, model: str, spec: PhysicalModel) -> str | None:
        from llmux.protocol.admin import SpeedTestRequest
        from llmux.services.speedtest import SpeedTest

        if self.left() < (0 if self.tiny else 45):
            self.row(model, "speed test", "skipped", "time budget")
            return None
        probe = (lambda: True) if self.tiny else None  # --tiny: both runs on the CPU
        test = SpeedTest(self.registry, self.controller, self.factory, **({"gpu_probe": probe} if probe else {}))
        request = SpeedTestRequest(model=model, max_tokens=8 if self.tiny else 16, audio_s=2.0 if self.tiny else 10.0)
        try:
            report = await test.run(request)
        except Exception as exc:
            self.row(model, "speed test", "FAILED", f"{type(exc).__name__}: {str(exc)[:160]}")
            return f"{type(exc).__name__}: {exc}"
        unit = report.gpu.unit.replace("tokens", "tok") + "/s"
        ttft = [self.engines[(model, d)].ttft_s for d in ("gpu", "cpu")]
        first = (
            "" if not all(ttft) else f"; first token {ttft[0][-1] * 1000:.0f} ms GPU, {ttft[1][-1] * 1000:.0f} ms CPU"
        )
        verdict = (
            "no GPU here: both runs on the CPU, no verdict"
            if self.tiny
            else f"{'passes' if report.passed else 'FAILS'} the {report.required:g}x requirement"
        )
        self.row(
            model,
            "GPU vs CPU",
            f"{report.gpu.rate:g} vs {report.cpu.rate:g} {unit}, x{report.speedup:g}",
            f"{verdict}{first}",
        )
        return None

    async def _tts(self, model: str) -> None:
        from llmux.engines.worker import run_in_thread
        from llmux.protocol.admin import SpeedTestRequest
        from llmux.services.speedtest import tts_workload

        request = SpeedTestRequest(model=model)
        async with self.controller.lease(model) as lease:
            if self.left() > 150:  # random T3 weights never stop: each call is 1000 speech tokens
                await run_in_thread(lambda _: tts_workload(lease.engine, request, warm_up=True), name="bench-tts")
            started = time.perf_counter()
            audio_s, _ = await run_in_thread(
                lambda _: tts_workload(lease.engine, request, warm_up=False), name="bench-tts"
            )
            wall = time.perf_counter() - started
        self.row(
            model,
            "TTS real-time factor",
            f"{audio_s / wall:.2f}x real time",
            f"{audio_s:.1f} s of audio in {wall:.1f} s (random T3 speaks its full 1000 tokens)",
        )

    async def run(self) -> None:
        try:
            for plan in PLANS:
                if self.only and plan.id not in self.only:
                    continue
                await self.model(plan)
        finally:
            await self.controller.shutdown(grace_s=10)


def _build(plan: Plan, directory: Path, voices: Path, tiny: bool) -> g.Built:
    directory.mkdir(parents=True, exist_ok=True)
    return plan.build(directory, voices, tiny)


def _size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _cuda() -> tuple[str, float] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return props.name, props.total_memory / 1e9


RUNTIME_MODULES = {
    "transformers": ["transformers"],
    "chatterbox": ["chatterbox", "perth", "av"],
    "llamacpp": ["llama_cpp"],
}


def _missing_runtime(backend: str) -> str | None:
    import importlib.util

    return next((n for n in RUNTIME_MODULES.get(backend, []) if importlib.util.find_spec(n) is None), None)


def environment() -> list[str]:
    """What the numeric paths depend on: versions, and whether the Hub kernels could load."""
    import importlib.metadata as md

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "absent"

    import torch

    cuda = f"CUDA {torch.version.cuda}" if torch.cuda.is_available() else "no CUDA"
    llama = "absent"
    if importlib.util.find_spec("llama_cpp") is not None:
        import llama_cpp

        llama = (
            f"{version('llama_cpp_python')} ({'CUDA' if llama_cpp.llama_supports_gpu_offload() else 'CPU-only build'})"
        )
    hub = "offline" if os.environ.get("HF_HUB_OFFLINE") == "1" else "online"
    return [
        f"torch {torch.__version__} ({cuda}); transformers {version('transformers')}",
        f"kernels package {version('kernels')}, Hub {hub}; llama-cpp-python {llama}",
    ]


def _no_llama_gpu(tiny: bool) -> str | None:
    """Why the llama.cpp row cannot show a GPU speed-up here, or None. ``--tiny`` runs it on the
    CPU anyway, so the code path stays alive."""
    try:
        import llama_cpp
    except ImportError:
        return "llama-cpp-python is not installed"
    if not tiny and not llama_cpp.llama_supports_gpu_offload():
        return "llama-cpp-python was built without CUDA (llama_supports_gpu_offload() is False)"
    return None


def table(rows: list[list[str]]) -> str:
    header = ["model", "measure", "result", "note"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    line = lambda r: "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[3]]).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in [*widths, 4]]), *map(line, rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small configurations, on the CPU (CI)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="skip what does not fit in this time")
    parser.add_argument("--workdir", type=Path, default=None, help="where the checkpoints are built (a disk)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (row by row)")
    parser.add_argument("--only", default="", help="comma-separated physical model ids (a rerun of some rows)")
    args = parser.parse_args(argv)
    _quiet()
    if not args.tiny and _cuda() is None:
        print("no CUDA device: the full-size run needs a GPU (use --tiny on a CPU)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="llmux-gpu-bench-", dir=args.workdir))
    started = time.monotonic()
    bench = Bench(work, args.tiny, args.budget_s, args.out)
    bench.only = {name for name in args.only.split(",") if name}
    result, note = environment()
    bench.row("bench", "environment", result, note)
    try:
        asyncio.run(bench.run())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bench.row("bench", "cleanup", "temp dir removed" if not work.exists() else f"LEFT BEHIND: {work}")
    gpu = f"{bench.gpu[0]} ({bench.gpu[1]:.0f} GB)" if bench.gpu else "no GPU (CPU only)"
    title = (
        f"bench.gpu{' --tiny' if args.tiny else ''}: {gpu}, {os.cpu_count()} CPUs, "
        f"{time.monotonic() - started:.0f} s of a {args.budget_s:.0f} s budget, {time.strftime('%Y-%m-%d')}"
    )
    text = f"{title}\n{table(bench.rows)}"
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def _quiet() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
