"""Wire shapes of ``GET /v1/usage`` (the calling key's), ``GET /v1/admin/usage`` (every key's)
and ``POST /v1/admin/keys/reload``."""

from __future__ import annotations

from typing import Literal

import msgspec


class UsageRow(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Sums over a date range; ``day``, ``client`` and ``model`` are present when grouped by."""

    day: str | None = None
    """UTC, ``YYYY-MM-DD``."""
    client: str | None = None
    """The key's name in api_keys.yaml (never the key)."""
    model: str | None = None
    """The model name as the client sent it (a virtual model or an alias)."""
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    audio_seconds: float
    """Audio transcribed."""
    speech_seconds: float
    """Speech synthesised."""
    characters: int
    """Characters of text spoken."""


class UsageReport(msgspec.Struct, kw_only=True):
    object: Literal["usage"] = "usage"
    start: str | None
    end: str | None
    group_by: list[str]
    data: list[UsageRow]
    """One row per group (none when the range has no usage)."""
    total: UsageRow


class KeysReloaded(msgspec.Struct, kw_only=True):
    object: Literal["keys"] = "keys"
    clients: list[str]
    """The names of the keys now in force."""
