"""OpenAI wire shapes of ``POST /v1/embeddings``.

Strict on requests, unlike chat: the endpoint has five parameters and llmux honours them all,
so anything else is a 400 naming it rather than a silently different embedding.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

EncodingFormat = Literal["float", "base64"]


class EmbeddingRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: str | list[Any]
    """A string, or a list of strings (token arrays are refused: send text). Checked by the
    service, which names the bad item."""
    encoding_format: EncodingFormat = "float"
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Matryoshka models only: keep this many leading components, renormalised."""
    user: str | None = None


class EmbeddingOut(msgspec.Struct, kw_only=True):
    object: str = "embedding"
    embedding: list[float] | str
    """Floats, or base64 of the little-endian float32 bytes (``encoding_format: base64``)."""
    index: int


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[EmbeddingOut]
    model: str
    usage: EmbeddingUsage
