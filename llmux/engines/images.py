"""Encoded image files (PNG, JPEG, ...) as the runtimes take them."""

from __future__ import annotations

import io
from typing import Any


def to_pil(raw: bytes) -> Any:
    """A decoded RGB ``PIL.Image`` (Pillow comes with every runtime that takes images)."""
    from PIL import Image

    image = Image.open(io.BytesIO(raw))
    image.load()
    return image.convert("RGB")
