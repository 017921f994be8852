"""What a client and an operator are told about failed loads: error texts without the server's
directories, the 503 a broken model answers with, the reasons ``/health`` is degraded."""

from __future__ import annotations

import re

from llmux.protocol.errors import ModelLoadFailed
from llmux.protocol.residency import ModelStatus
from llmux.residency.slots import Slot

_PATH = re.compile(r"""(?<![\w.~:/])(?:~|\.{1,2})?/(?:[^\s'"/:,;()\[\]]+/)*""")


def redact_paths(text: str) -> str:
    """The text with every directory part of a path dropped (``/srv/models/x/ve.pt`` →
    ``ve.pt``): clients see which file, not where the server keeps it."""
    return _PATH.sub("", text)


def broken_error(slot: Slot, retry_in_s: float) -> ModelLoadFailed:
    return ModelLoadFailed(
        f"loading model {slot.id!r} failed: {slot.last_error}; retried after {retry_in_s:g} s "
        "or an admin reset (POST /v1/admin/models/{model}/reset)",
        retry_after=retry_in_s,
    )


def problems(models: list[ModelStatus]) -> list[str]:
    """What makes llmux degraded now, one sentence each."""
    reasons = []
    for view in models:
        if view.broken:
            reasons.append(f"model {view.id!r} is broken ({view.last_error}); retried in {view.retry_in_s:g} s")
        elif view.last_error is not None:
            reasons.append(f"model {view.id!r}: its last load failed ({view.last_error})")
        if view.abandoned_loads:
            reasons.append(f"model {view.id!r}: {view.abandoned_loads} timed-out load thread(s) still running")
    return reasons
