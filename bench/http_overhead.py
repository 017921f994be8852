"""What llmux's HTTP layer adds over calling the same instant backend in-process.

    python -m bench.http_overhead

Time to first byte: p50 over many small streamed requests, HTTP (real uvicorn server in a
separate process, keep-alive connection) minus in-process (the backend's first event).
Throughput: one long stream, SSE chunks per second as the client parses them.
Targets (issue #2): <= 1 ms added at p50, >= 20,000 chunks/s.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from llmux.engines.base import ChatJob, SamplingParams
from llmux.registry import ModelType, PhysicalModel
from tests.support.backends import InstantChat
from tests.support.server import free_port

from bench.instant_server import KEY

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 300
LONG = 100_000


def in_process() -> tuple[float, float]:
    backend = InstantChat(PhysicalModel(type=ModelType.LLM, backend="llamacpp", weights="-", vram_gb=1, id="i"))
    backend.load()
    firsts = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        next(iter(backend.chat(ChatJob(messages=[{"role": "user", "content": "hi"}]), threading.Event())))
        firsts.append(time.perf_counter() - started)
    job = ChatJob(messages=[{"role": "user", "content": "hi"}], params=SamplingParams(max_tokens=LONG))
    started = time.perf_counter()
    n = sum(1 for _ in backend.chat(job, threading.Event()))
    return statistics.median(firsts), n / (time.perf_counter() - started)


def _request(conn: http.client.HTTPConnection, max_tokens: int) -> http.client.HTTPResponse:
    body = json.dumps({"model": "instant", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": max_tokens})
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
    started = time.perf_counter()
    response = _request(conn, LONG)
    chunks = 0
    while block := response.read1(1 << 16):
        chunks += block.count(b"data: ")
    elapsed = time.perf_counter() - started
    return statistics.median(firsts), chunks / elapsed


def main() -> None:
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
