"""Run every benchmark: ``python -m bench`` (each also runs alone: ``python -m bench.NAME``)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

SKIP = {"instant_server", "__main__", "gpu", "gpu_models", "gpu_measure"}  # bench.gpu is its own command

if __name__ == "__main__":
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name in SKIP:
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if hasattr(module, "main"):
            print(f"\n== bench.{info.name} ==")
            module.main()
