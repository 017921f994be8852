"""Properties of what the embeddings endpoint sends for any pooled vectors: base64 is exactly the
float32 little-endian bytes of the float form, and a Matryoshka cut is the unit-length prefix."""

from __future__ import annotations

import base64

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from llmux.engines.embedding import finish, normalised

FLOATS = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)
MATRICES = st.tuples(st.integers(1, 4), st.integers(1, 48)).flatmap(
    lambda shape: arrays(np.float32, shape, elements=FLOATS)
)


@settings(max_examples=300)
@given(MATRICES)
def test_base64_decodes_to_exactly_the_float_vectors(vectors: np.ndarray) -> None:
    floats = finish(vectors, None, "float")
    encoded = finish(vectors, None, "base64")
    decoded = [np.frombuffer(base64.b64decode(text), dtype="<f4").tolist() for text in encoded]
    assert decoded == floats


@settings(max_examples=300)
@given(MATRICES, st.integers(1, 64))
def test_a_cut_keeps_the_prefix_direction_at_unit_length(vectors: np.ndarray, dimensions: int) -> None:
    unit = normalised(vectors.astype(np.float64))
    out = np.array(finish(unit.astype(np.float32), dimensions, "float"))
    width = min(dimensions, vectors.shape[1])
    assert out.shape == (vectors.shape[0], width)
    for row, source in zip(out, unit):
        head = source[:width]
        if np.linalg.norm(head) > 1e-3:
            assert abs(np.linalg.norm(row) - 1.0) < 1e-4
            assert np.allclose(row, head / np.linalg.norm(head), atol=1e-4)
        else:
            assert np.all(np.isfinite(row))  # a (near) zero prefix never divides by zero
