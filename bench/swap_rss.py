"""Host memory per swap of the demo's faster-whisper model (Whisper tiny.en, CTranslate2).

    python -m bench.swap_rss

Each cycle is one swap as llmux runs it: load, two transcriptions of 3 s of audio, unload, each
on a thread of its own (as the residency threads and the worker bridge run them). RSS is read
after every unload; after the warm-up (5 cycles) the table gives the median, the peak and the
trend (least-squares slope, MB per cycle): single readings are noisy. "without release" is
the unload as it was (the model reference dropped, nothing more); "with release" is llmux's
(``engines.host_memory.release_host_memory``: a collection, then glibc's ``malloc_trim``). Each
variant runs in a fresh process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

CYCLES = int(os.environ.get("LLMUX_SWAP_CYCLES", "30"))
WARM = 5
ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def on_thread(fn: object) -> None:
    thread = threading.Thread(target=fn)  # type: ignore[arg-type]
    thread.start()
    thread.join()


def cycles(release: bool) -> list[float]:
    import llmux.engines.faster_whisper_asr as fw
    from llmux.engines.base import TranscribeOptions
    from llmux.engines.factory import create_engine
    from llmux.registry import load_models

    if not release:
        fw.release_host_memory = lambda: None  # type: ignore[assignment]
    registry = load_models(ROOT / "config" / "demo" / "models.yaml")
    spec = registry.physical["whisper-tiny-en"]
    audio = (np.random.default_rng(0).standard_normal(16_000 * 3) * 0.01).astype(np.float32)
    out = []
    for _ in range(CYCLES):
        engine = create_engine(spec, registry)
        on_thread(engine.load)
        for _ in range(2):
            on_thread(lambda e=engine: e.transcribe(audio, TranscribeOptions(), threading.Event()))
        on_thread(engine.unload)
        del engine
        out.append(rss_mb())
    return out


def main() -> None:
    print(f"{'unload':<18}{'RSS cycle 1':>12}{'median':>8}{'peak':>8}{'MB/cycle':>10}   (RSS in MB, {CYCLES} cycles)")
    for variant in ("without release", "with release"):
        run = subprocess.run(
            [sys.executable, "-m", "bench.swap_rss", variant], cwd=ROOT, capture_output=True, text=True, check=True
        )
        rss = np.array([float(x) for x in run.stdout.split()])
        warm = rss[WARM:]
        slope = float(np.polyfit(np.arange(len(warm)), warm, 1)[0])
        print(f"{variant:<18}{rss[0]:>12.0f}{np.median(warm):>8.0f}{warm.max():>8.0f}{slope:>+10.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(" ".join(f"{x:.1f}" for x in cycles(sys.argv[1] == "with release")))
    else:
        main()
