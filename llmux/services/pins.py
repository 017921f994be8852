"""Admin pins that survive a restart: ``<data_dir>/pins.json``.

Pins come from two places. ``pinned:`` in models.yaml holds at every start (the controller applies
it). An admin's ``POST /v1/admin/models/{model}/pin`` is written here and applied again at the next
start; ``unpin`` removes it. Only admin pins of models the config does not pin are stored: the
config is the operator's lasting word, so an admin unpin of a config pin lasts until the restart.
Without a data directory (tests, ``create_app`` without one) admin pins live in memory only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

from llmux.engines.worker import run_in_thread
from llmux.residency.controller import ResidencyController

log = structlog.get_logger("llmux.pins")

FILE_NAME = "pins.json"


class PinFile:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def apply(self, controller: ResidencyController) -> None:
        """At start-up: pin what the file lists (models no longer configured are skipped)."""
        if self.path is None or not self.path.exists():
            return
        try:
            listed = json.loads(self.path.read_text(encoding="utf-8"))["pinned"]
            names = [str(n) for n in listed]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged file pins nothing
            log.warning("pins.unreadable", path=str(self.path), error=repr(exc))
            return
        known = {m.id for m in controller.status()}
        for name in names:
            if name in known:
                controller.pin(name, True)
            else:
                log.warning("pins.unknown_model", model=name)

    async def save(self, controller: ResidencyController) -> None:
        """After an admin pin or unpin: write the admin pins (atomically, off the event loop)."""
        if self.path is None:
            return
        configured = set(controller.registry.pinned)
        pinned = sorted(m.id for m in controller.status() if m.pinned and m.id not in configured)
        path = self.path

        def write(_: object) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".json.partial")
            partial.write_text(json.dumps({"pinned": pinned}) + "\n", encoding="utf-8")
            os.replace(partial, path)  # a crash leaves the old file or the new one, never half

        await run_in_thread(write, name="pins-save")
        log.info("pins.saved", pinned=pinned)
