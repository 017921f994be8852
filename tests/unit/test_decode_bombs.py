"""Decode bombs (issue 10): audio longer than the limit is refused while it decodes, an image
with too many pixels from its header — neither is ever fully in memory."""

from __future__ import annotations

import base64
import io
import tracemalloc

import numpy as np
import pytest

from llmux.audio.decode import decode_audio
from llmux.chat.images import ImagePolicy, image_bytes
from llmux.protocol.errors import InvalidRequest
from tests.support.audio import encode


def test_long_audio_is_refused_while_decoding_not_after() -> None:
    flac = encode(np.zeros(16_000 * 600, dtype=np.float32), 16_000, "flac", "flac")  # 10 min of silence
    assert len(flac) < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequest) as refused:
            decode_audio(flac, 16_000, max_seconds=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.code == "audio_too_long" and refused.value.param == "file"
    assert peak < 8_000_000, f"decoded {peak} bytes before refusing (all of it is 38 MB)"
    assert decode_audio(flac, 16_000).size == 16_000 * 600  # without a limit it is all there


def png(width: int, height: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")  # 1 bit per pixel: a tiny file
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_an_image_with_too_many_pixels_is_refused_from_its_header() -> None:
    big = png(6000, 6000)
    assert len(big) < 200_000
    with pytest.raises(InvalidRequest) as refused:
        image_bytes(big, ImagePolicy(max_pixels=16_777_216), "messages[0].content[1].image_url")
    assert refused.value.code == "image_too_large" and refused.value.param == "messages[0].content[1].image_url"
    assert image_bytes(png(64, 64), ImagePolicy())


def test_an_image_past_pillows_own_bomb_bound_is_a_400_too() -> None:
    with pytest.raises(InvalidRequest) as refused:
        image_bytes(png(20000, 20000), ImagePolicy(max_pixels=10**12), "image")
    assert refused.value.code == "image_too_large"
