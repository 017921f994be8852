"""A real llmux server whose models are the instant test engine (for the overhead benchmark).

    python -m bench.instant_server PORT

``instant`` answers with a few pieces at once (time to first byte); ``instant-long`` pads every
answer with ``CHUNKS`` one-character pieces (throughput; ``max_tokens`` cuts it). Two models,
not one padded one: a pure-Python engine padding 100,000 pieces holds the GIL while a short
request is already done with it, which would time the GIL hand-off, not llmux.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, ModelType, PhysicalModel, Registry, VirtualModel
from llmux.registry.config import Limits
from tests.support.backends import InstantChat

KEY = "bench-key-bench-key-bench"
CHUNKS = 100_000
LONG_MODEL = "instant-long"


def engine(spec: PhysicalModel, registry: Registry | None = None) -> InstantChat:
    return InstantChat(spec, registry, chunks=CHUNKS if spec.id == LONG_MODEL else 0)


def app():  # type: ignore[no-untyped-def]
    names = ("instant", LONG_MODEL)
    physical = {n: PhysicalModel(type=ModelType.LLM, backend="llamacpp", weights="-", vram_gb=1, id=n) for n in names}
    virtual = {n: VirtualModel(physical=n, id=n) for n in names}
    registry = Registry(16, Path("."), None, Limits(), physical, virtual)
    return create_app(registry, ApiKeysFile((ApiKey(name="bench", key=KEY),)), factory=engine)


if __name__ == "__main__":
    from llmux.logging import configure

    configure("warning", json=True)
    uvicorn.run(app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
