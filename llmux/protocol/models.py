"""``GET /v1/models``: the virtual models clients may name."""

from __future__ import annotations

import msgspec


class ModelCard(msgspec.Struct):
    id: str
    """A virtual model name (what a request's ``model`` field takes)."""
    created: int
    owned_by: str
    object: str = "model"


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"
