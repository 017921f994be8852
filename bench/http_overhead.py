"""What llmux's HTTP layer adds over calling the same instant backend in-process.

    python -m bench.http_overhead

Time to first byte: p50 over many small streamed requests, HTTP (real uvicorn server in a
separate process, keep-alive connection) minus in-process (the first event batch of a chat
turn through the chat pipeline, ``ChatRun``, on the same engine).
Throughput: one long stream, SSE chunks per second as the client parses them.
Targets (issue #2): <= 1 ms added at p50, >= 20,000 chunks/s.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import aclosing
from pathlib import Path

import msgspec

from bench.instant_server import CHUNKS, KEY, LONG_MODEL, engine
from llmux.chat.events import ChatJob
from llmux.chat.pipeline import ChatRun
from llmux.engines.base import SamplingParams
from llmux.protocol.chat import Message
from llmux.registry import ModelType, PhysicalModel
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 300
LONG = CHUNKS


HI = msgspec.convert([{"role": "user", "content": "hi"}], list[Message])


async def _in_process() -> tuple[float, float]:
    spec = PhysicalModel(type=ModelType.LLM, backend="llamacpp", weights="-", vram_gb=1, id="instant")
    short, long = engine(spec), engine(msgspec.structs.replace(spec, id=LONG_MODEL))
    short.load()
    long.load()
    firsts = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        run = ChatRun(short, spec.family, ChatJob(messages=HI, params=SamplingParams(max_tokens=1)))
        async with aclosing(run.events()) as events:
            await anext(events)
        firsts.append(time.perf_counter() - started)
        await run.stopped
    run = ChatRun(long, spec.family, ChatJob(messages=HI, params=SamplingParams(max_tokens=LONG)))
    started = time.perf_counter()
    n = 0
    async for batch in run.events():
        n += len(batch)
    return statistics.median(firsts), n / (time.perf_counter() - started)


def in_process() -> tuple[float, float]:
    return asyncio.run(_in_process())


def _request(conn: http.client.HTTPConnection, max_tokens: int, model: str = "instant") -> http.client.HTTPResponse:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": max_tokens})
    conn.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    return conn.getresponse()


def over_http(port: int) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    _request(conn, 1).read()  # load the model, warm the connection
    firsts = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = _request(conn, 1)
        first = response.read1(1 << 16)  # the first body bytes: the role chunk
        firsts.append(time.perf_counter() - started)
        assert first.startswith(b"data: "), first
        response.read()
    _request(conn, 1, LONG_MODEL).read()  # load the long model
    started = time.perf_counter()
    response = _request(conn, LONG, LONG_MODEL)
    chunks = 0
    while block := response.read1(1 << 16):
        chunks += block.count(b"data: ")
    elapsed = time.perf_counter() - started
    return statistics.median(firsts), chunks / elapsed


def main() -> None:
    from llmux.logging import configure

    configure("warning", json=True)  # the in-process side logs like the server does
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "bench.instant_server", str(port)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        local_first, local_rate = in_process()
        http_first, http_rate = over_http(port)
    finally:
        server.terminate()
        server.wait(10)
    rows = [
        ("time to first byte, p50", f"{local_first * 1e3:.3f} ms", f"{http_first * 1e3:.3f} ms", f"+{(http_first - local_first) * 1e3:.3f} ms", "<= +1 ms"),
        ("streamed chunks/s", f"{local_rate:,.0f}", f"{http_rate:,.0f}", f"{http_rate / local_rate:.1%}", ">= 20,000"),
    ]
    widths = [max(len(str(r[i])) for r in [("metric", "in-process", "HTTP", "overhead", "target"), *rows]) for i in range(5)]
    for row in [("metric", "in-process", "HTTP", "overhead", "target"), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
