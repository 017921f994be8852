"""Many clients on one model, and a cached prompt prefix: ``python -m bench.concurrency``.

Table 1 — 1, 4 and 8 concurrent streaming clients on SmolLM2-135M (llama.cpp, CPU, greedy, 64
tokens each, distinct prompts): aggregate tokens/s (all tokens / wall time), p50 and p99 time
to first token, and how many streams ended complete (with a ``finish_reason``). Servers, one
after the other in the same run, on the same file with the same threads:
- llmux with ``max_parallel: 8`` (continuous batching),
- llmux with ``max_parallel: 1`` (one request at a time),
- llama-cpp-python's own ``python -m llama_cpp.server``,
- llmux on a small random Qwen3.5 through transformers, with ``max_parallel: 8`` and ``1``.

Table 2 — time to first token of a request whose prompt repeats a ~4,000-token prefix the
previous request just used (cached), against the same request with a fresh prefix (cold).

Targets (issue 11, 2-core CPU): 4 clients >= 2x one client's aggregate tokens/s with p99 TTFT <= 2x
a single client's; a cached 4,000-token prefix >= 5x faster to first token than cold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat_bench import KEY, smollm2, table  # noqa: E402

TOPICS = ["cats", "the sea", "Paris", "bread", "a lighthouse", "winter", "a violin", "the moon"]
WORDS = ("river stone lantern copper meadow harbor violet engine marble orchard thunder velvet "
         "compass glacier saffron tunnel beacon willow falcon ember quartz prairie cobalt").split()


@dataclass
class Result:
    ttft_s: float | None
    tokens: int
    complete: bool
    prompt_tokens: int = 0
    cached_tokens: int = 0


async def stream(client: httpx.AsyncClient, url: str, model: str, messages: list[dict[str, str]],
                 max_tokens: int) -> Result:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first, chunks, usage, finished = None, 0, None, False
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {KEY}"}) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        chunks += 1
                        first = first or time.perf_counter() - started
                    finished = finished or bool(choice.get("finish_reason"))
    except httpx.RemoteProtocolError:
        pass  # the server cut the stream (llama_cpp.server does, when another request arrives)
    # llama_cpp.server sends one chunk per token and no usage when streaming.
    tokens = usage["completion_tokens"] if usage else chunks
    cached = ((usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return Result(first, tokens, finished, usage["prompt_tokens"] if usage else 0, cached)


async def clients(url: str, model: str, n: int, rounds: int, max_tokens: int) -> tuple[float, list[Result]]:
    """``rounds`` waves of ``n`` simultaneous streams; (aggregate tokens/s, every result)."""
    results: list[Result] = []
    tokens, wall = 0, 0.0
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=32)) as client:
        for r in range(rounds):
            messages = [[{"role": "user", "content": f"Write a long story about {TOPICS[(i + r) % len(TOPICS)]}."}]
                        for i in range(n)]
            started = time.perf_counter()
            wave = await asyncio.gather(*(stream(client, url, model, m, max_tokens) for m in messages))
            wall += time.perf_counter() - started
            tokens += sum(w.tokens for w in wave)
            results.extend(wave)
    return tokens / wall, results


def prefix(seed: int, words: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


async def prefix_ttft(url: str, model: str, seed: int, words: int) -> tuple[float, float, int]:
    """(cold, cached) time to first token: a fresh ~4,000-token prefix, then the same prefix again
    with a different question."""
    system = {"role": "system", "content": "Notes: " + prefix(seed, words)}
    async with httpx.AsyncClient(timeout=600) as client:
        cold = await stream(client, url, model, [system, {"role": "user", "content": "Summarise."}], 4)
        cached = await stream(client, url, model, [system, {"role": "user", "content": "List three words."}], 4)
    assert cold.ttft_s is not None and cached.ttft_s is not None, "no token came back"
    return cold.ttft_s, cached.ttft_s, cold.prompt_tokens


def cached_share(results: list[Result]) -> str:
    """The share of prompt tokens served from a cache: a row whose single client finds its whole
    prompt cached (the same system prompt and question as the warm-up) starts faster than one
    whose clients land in empty slots, whatever the batching."""
    prompt = sum(r.prompt_tokens for r in results)
    return f"{100 * sum(r.cached_tokens for r in results) / prompt:.0f}%" if prompt else "?"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def decode_ceiling(threads: int, counts: list[int], steps: int = 24) -> dict[int, float]:
    """llama.cpp's own limit on this host, without any server: tokens/s of ``llama_decode`` steps
    that carry one token for each of n sequences, in the context llmux's batch engine builds (a
    KV stream per sequence). No batching server can beat this ratio over n = 1: on a CPU whose
    matrix kernels are compute-bound, n tokens per step cost nearly n times one."""
    import llama_cpp
    from llama_cpp._internals import LlamaContext

    width = max(counts)
    llm = llama_cpp.Llama(model_path=str(smollm2()), n_ctx=256, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    params = llm.context_params
    params.n_ctx, params.n_seq_max, params.kv_unified = 256 * width, width, False
    context = LlamaContext(model=llm._model, params=params, verbose=False)
    ctx, batch = context.ctx, llama_cpp.llama_batch_init(width * 16, 0, 1)

    def decode(entries: list[tuple[int, int]]) -> None:  # (position, sequence); every token 100
        for n, (pos, seq) in enumerate(entries):
            batch.token[n], batch.pos[n], batch.n_seq_id[n], batch.logits[n] = 100, pos, 1, True
            batch.seq_id[n][0] = seq
        batch.n_tokens = len(entries)
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    try:
        for seq in range(width):  # a short prompt in every sequence, and the first (slow) graph built
            decode([(pos, seq) for pos in range(16)])
        rates: dict[int, float] = {}
        for n in counts:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            for seq in range(n):
                decode([(pos, seq) for pos in range(16)])
            started = time.perf_counter()
            for step in range(steps):
                decode([(16 + step, seq) for seq in range(n)])
            rates[n] = n * steps / (time.perf_counter() - started)
        return rates
    finally:
        llama_cpp.llama_batch_free(batch)
        context.close()
        llm.close()


# ---- servers -----------------------------------------------------------------------------------


def wait_up(process: subprocess.Popen[bytes], url: str, path: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with {process.returncode}")
        try:
            if httpx.get(url + path, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server at {url} did not start")


def llmux_server(work: Path, threads: int, runtime: str, parallel: int, n_ctx: int,
                 port: int) -> subprocess.Popen[bytes]:
    """SmolLM2 on llama.cpp, or the small Qwen3.5 on transformers, with ``max_parallel`` = ``parallel``."""
    if runtime == "llamacpp":
        model = {"type": "llm", "backend": "llamacpp", "family": "chatml", "vram_gb": 0.3, "weights": str(smollm2()),
                 "options": {"n_gpu_layers": 0, "n_ctx": n_ctx, "threads": threads, "max_parallel": parallel}}
        virtual = {"physical": "smollm2"}
    else:
        model = {"type": "llm", "backend": "transformers", "family": "qwen3.5", "vram_gb": 0.3,
                 "weights": str(small_qwen(work)), "options": {"device": "cpu", "threads": threads, "max_context": n_ctx,
                             "max_parallel": parallel}}
        virtual = {"physical": "smollm2", "behaviour": {"thinking": False}}
    config = {"budget_gb": 64, "models_dir": str(work), "physical": {"smollm2": model},
              "virtual": {"smollm2": virtual}}
    directory = work / f"llmux-{runtime}-{parallel}-{n_ctx}"
    directory.mkdir()
    (directory / "models.yaml").write_text(yaml.safe_dump(config))
    (directory / "api_keys.yaml").write_text(yaml.safe_dump({"keys": [{"name": "bench", "key": KEY}]}))
    process = subprocess.Popen([sys.executable, "-m", "llmux", "serve", "--config", str(directory), "--port", str(port),
                                "--log-level", "warning", "--data-dir", str(directory / "data")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(process, f"http://127.0.0.1:{port}", "/health")
    return process


def small_qwen(work: Path) -> Path:
    from tests.fixtures.tiny_models import build_qwen35

    if not (work / "qwen-small").exists():
        build_qwen35(work / "qwen-small", byte_alphabet=False, hidden=256, layers=4)
    return work / "qwen-small"


def words_for(work: Path, runtime: str, tokens: int) -> int:
    """How many prefix words make about ``tokens`` tokens for that server's tokenizer."""
    if runtime != "transformers":
        return round(tokens * 3850 / 4000)  # measured for SmolLM2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_qwen(work))
    return round(tokens * 500 / len(tokenizer(prefix(0, 500))["input_ids"]))


def reference_server(threads: int, n_ctx: int, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2()), "--n_threads", str(threads),
         "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx), "--n_gpu_layers", "0", "--port", str(port),
         "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(process, f"http://127.0.0.1:{port}", "/v1/models")
    return process


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4, help="waves of simultaneous clients per row")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--prefix-tokens", type=int, default=4000)
    parser.add_argument("--prefix-runs", type=int, default=1, help="cold/cached pairs per server (median)")
    parser.add_argument("--port", type=int, default=18291)
    parser.add_argument("--only", default="", help="run only the servers whose name contains this")
    parser.add_argument("--no-prefix", action="store_true", help="skip the prefix-cache table")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]
    work = Path(tempfile.mkdtemp(prefix="llmux-bench-conc-"))
    url = f"http://127.0.0.1:{args.port}"
    servers = [
        (f"llmux max_parallel {max(counts)}", "llamacpp", max(counts)),
        ("llmux max_parallel 1", "llamacpp", 1),
        ("llama_cpp.server", "reference", 1),
        (f"llmux transformers Qwen3.5 max_parallel {max(counts)}", "transformers", max(counts)),
        ("llmux transformers Qwen3.5 max_parallel 1", "transformers", 1),
    ]

    def start(runtime: str, parallel: int, n_ctx: int) -> subprocess.Popen[bytes]:
        if runtime == "reference":
            return reference_server(args.threads, n_ctx, args.port)
        return llmux_server(work, args.threads, runtime, parallel, n_ctx, args.port)

    rows, prefix_rows = [], []
    for name, runtime, parallel in [s for s in servers if args.only in s[0]]:
        process = start(runtime, parallel, 2048)
        try:
            asyncio.run(clients(url, "smollm2", 1, 1, 8))  # loads the model, warms the path
            single: float | None = None
            for n in counts:
                tps, results = asyncio.run(clients(url, "smollm2", n, args.rounds, args.max_tokens))
                ttfts = [r.ttft_s for r in results if r.ttft_s is not None]
                single = single or tps
                rows.append([name, n, f"{tps:.1f}", f"{tps / single:.2f}x", f"{statistics.median(ttfts) * 1000:.0f}",
                             f"{percentile(ttfts, 0.99) * 1000:.0f}", f"{sum(r.complete for r in results)}/{len(results)}",
                             f"{sum(r.tokens for r in results) / len(results):.0f}", cached_share(results)])
        finally:
            process.terminate()
            process.wait(30)
        if args.no_prefix:
            continue
        process = start(runtime, parallel, args.prefix_tokens + 608)
        try:
            asyncio.run(clients(url, "smollm2", 1, 1, 4))
            words = words_for(work, runtime, args.prefix_tokens)
            pairs = [asyncio.run(prefix_ttft(url, "smollm2", seed, words)) for seed in range(args.prefix_runs)]
            cold, cached = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
            prefix_rows.append([name, pairs[0][2] or "?", f"{cold * 1000:.0f}", f"{cached * 1000:.0f}",
                                f"{cold / cached:.1f}x"])
        finally:
            process.terminate()
            process.wait(30)
    print(f"concurrent streams: SmolLM2-135M Q4_1 (llama.cpp) / a random Qwen3.5, hidden 256, 4 layers "
          f"(transformers, fp32), {args.max_tokens} tokens each, greedy, {args.threads} thread(s), "
          f"{args.rounds} waves per row, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(table(rows, ["server", "clients", "agg tok/s", "vs 1 client", "TTFT p50 ms", "TTFT p99 ms",
                       "complete", "tokens/stream", "prompt cached"]))
    if not args.only or "ceiling" in args.only:
        rates = decode_ceiling(args.threads, counts)
        print(f"\nllama.cpp's ceiling on this host: llama_decode steps of one token for each of n sequences, "
              f"no server ({args.threads} thread(s)); llmux's rows above are bounded by this ratio")
        print(table([[n, f"{rates[n]:.1f}", f"{rates[n] / rates[counts[0]]:.2f}x"] for n in counts],
                    ["sequences", "tok/s", "vs 1 sequence"]))
    if prefix_rows:
        print(f"\nprefix cache: a ~{args.prefix_tokens}-token system prompt, then the same prefix with another "
              f"question; median of {args.prefix_runs}")
        print(table(prefix_rows, ["server", "prompt tokens", "cold TTFT ms", "cached TTFT ms", "cold/cached"]))


if __name__ == "__main__":
    main()
