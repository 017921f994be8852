"""release_host_memory: a model held only by a reference cycle is gone after an unload."""

from __future__ import annotations

import gc
import weakref

from llmux.engines.host_memory import _TRIM, release_host_memory


class Weights:
    def __init__(self) -> None:
        self.buffer = bytearray(8 * 2**20)
        self.me = self  # a cycle, as model wrappers often hold


def test_an_unloaded_model_in_a_cycle_is_collected_and_the_heap_trimmed() -> None:
    gc.disable()  # the collector must not happen to run before the release does
    try:
        weights = Weights()
        alive = weakref.ref(weights)
        del weights
        assert alive() is not None
        release_host_memory()
        assert alive() is None
    finally:
        gc.enable()
    assert _TRIM is not None  # glibc here (the container and CI are Debian)
