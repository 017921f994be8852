"""A real llmux server whose one model is the instant test backend (for the overhead benchmark).

    python -m bench.instant_server PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, ModelType, PhysicalModel, Registry, VirtualModel
from llmux.registry.config import Limits
from tests.support.backends import instant_factory

KEY = "bench-key-bench-key-bench"
CHUNKS = 100_000
"""One-character pieces that pad every answer, so a long stream is as long as it asks
(``max_tokens`` cuts the short ones)."""


def app():  # type: ignore[no-untyped-def]
    spec = PhysicalModel(type=ModelType.LLM, backend="llamacpp", weights="-", vram_gb=1, id="instant")
    registry = Registry(16, Path("."), None, Limits(), {"instant": spec}, {"instant": VirtualModel(physical="instant", id="instant")})
    return create_app(registry, ApiKeysFile((ApiKey(name="bench", key=KEY),)), factory=instant_factory(CHUNKS))


if __name__ == "__main__":
    from llmux.logging import configure

    configure("warning", json=True)
    uvicorn.run(app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
