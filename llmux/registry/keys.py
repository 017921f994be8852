"""Which API keys ``llmux serve`` refuses: the shipped placeholders, the key the demo publishes,
and keys too short to resist guessing. ``--allow-demo-keys`` accepts them (``make demo``)."""

from __future__ import annotations

from llmux.registry.config import ApiKeysFile
from llmux.registry.registry import Registry

MIN_SERVE_LENGTH = 24
"""Characters; ``secrets.token_urlsafe(32)`` (what the README suggests) gives 43."""

PUBLISHED = frozenset({"sk-llmux-demo-not-a-secret", "sk-llmux-demo-admin-not-a-secret"})
"""Keys printed in this repository's README and demo config: anyone can read them."""


def weak_keys(keys: ApiKeysFile, min_length: int = MIN_SERVE_LENGTH) -> list[str]:
    """One line per key that must not guard a reachable server (names the key's client, never
    the key itself)."""
    problems = []
    for entry in keys.keys:
        if entry.key.startswith("CHANGE-ME"):
            problems.append(f"api key {entry.name!r} is the shipped placeholder")
        elif entry.key in PUBLISHED:
            problems.append(f"api key {entry.name!r} is the demo key published in the README")
        elif len(entry.key) < min_length:
            problems.append(f"api key {entry.name!r} is shorter than {min_length} characters")
    return problems


def unknown_models(keys: ApiKeysFile, registry: Registry) -> list[str]:
    """One line per ``models:`` entry that names no virtual model or alias: a typo there would
    otherwise lock a client out of the model it was meant to have."""
    known = set(registry.virtual) | set(registry.aliases)
    return [
        f"api key {entry.name!r}: models lists {name!r}, which is no virtual model or alias"
        for entry in keys.keys
        for name in entry.models or ()
        if name not in known
    ]
