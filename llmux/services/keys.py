"""The API keys in force, and reloading them without a restart (SIGHUP or the admin API).

A reload reads and checks the whole file first (its shape, unique names and keys, the models
each key lists, and — unless the server runs with ``--allow-demo-keys`` — no weak key) and
swaps it in with one assignment, so a request sees either the old keys or the new ones, never
a mix; a bad file changes nothing and its error is logged and returned. Counters (rate limits,
usage) are kept by client name, so they carry over a reload.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from llmux.protocol.errors import ConfigError
from llmux.registry import ApiKeysFile, Registry, load_keys
from llmux.registry.keys import unknown_models, weak_keys

log = structlog.get_logger("llmux.keys")


class KeyStore:
    """``path`` None: keys given in code, which cannot be reloaded."""

    def __init__(
        self, keys: ApiKeysFile, registry: Registry, *, path: Path | None = None, allow_weak: bool = True
    ) -> None:
        self.keys = keys
        self.registry = registry
        self.path = path
        self.allow_weak = allow_weak
        self._listeners: list[Callable[[ApiKeysFile], None]] = []

    def on_change(self, listener: Callable[[ApiKeysFile], None]) -> None:
        self._listeners.append(listener)
        listener(self.keys)

    def reload(self) -> ApiKeysFile:
        """Read the file again; raises ``ConfigError`` (keeping the keys in force) if it is bad."""
        try:
            if self.path is None:
                raise ConfigError("the keys were not loaded from a file: nothing to reload")
            keys = load_keys(self.path)
            problems = unknown_models(keys, self.registry)
            if not self.allow_weak:
                problems += weak_keys(keys)
            if problems:
                raise ConfigError(f"{self.path}: {'; '.join(problems)}")
        except ConfigError as exc:
            log.error("keys.reload_failed", error=exc.message, kept=len(self.keys.keys))
            raise
        self.keys = keys
        for listener in self._listeners:
            listener(keys)
        log.info("keys.reloaded", clients=[k.name for k in keys.keys])
        return keys
