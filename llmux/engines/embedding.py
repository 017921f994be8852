"""What every embedding runtime shares: the input-length check, and turning pooled vectors into
what the API sends (Matryoshka truncation, renormalisation, float lists or base64).

Runs in the worker thread next to the model (numpy is installed with every runtime; the core
does not import it).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from llmux.protocol.embeddings import EncodingFormat
from llmux.protocol.errors import InvalidRequest


def check_lengths(counts: Sequence[int], context: int) -> None:
    """A 400 naming ``input`` (and which one) when an input has more tokens than the model
    takes: silently truncating would embed a different text than the client sent."""
    for index, count in enumerate(counts):
        if count > context:
            where = "input" if len(counts) == 1 else f"input[{index}]"
            raise InvalidRequest(
                f"{where} is {count} tokens; this model embeds at most {context} tokens per input.",
                param="input",
                code="context_length_exceeded",
            )


def normalised(vectors: Any) -> Any:
    """Rows scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


def finish(vectors: Any, dimensions: int | None, encoding: EncodingFormat) -> list[Any]:
    """``dimensions`` keeps the first that many components and renormalises (Matryoshka: the
    service allows it only for models declared ``matryoshka``). ``base64`` is the float32
    little-endian bytes of each vector, what the openai SDK decodes."""
    array = np.asarray(vectors, dtype=np.float32)
    if dimensions is not None and dimensions < array.shape[1]:
        array = normalised(array[:, :dimensions]).astype(np.float32)
    if encoding == "base64":
        little = array.astype("<f4", copy=False)
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in little]  # one str per input
    rows: list[Any] = array.tolist()  # one list of floats per input
    return rows
