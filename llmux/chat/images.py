"""Images in chat requests: fetched (where allowed) and decoded before a model is leased.

A bad image is the client's mistake: it is a 400 before anything is loaded or swapped, even
with ``stream: true`` (the refusal is the HTTP status, not an in-band error).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

from llmux.chat.fetch import Network, fetch
from llmux.protocol.errors import InvalidRequest


@dataclass(frozen=True)
class ImagePolicy:
    remote: bool = False
    """Fetch ``http(s)`` URLs (``limits.remote_images``). Off by default: SSRF."""
    allow: tuple[Network, ...] = ()
    """Non-public networks remote URLs may name (``limits.remote_images_allow``)."""
    max_bytes: int = 20 * 2**20
    timeout_s: float = 10.0
    """The whole fetch, redirects and body included."""
    max_pixels: int = 16_777_216
    """Refused from the header, before decoding: a 230 KB PNG can decode to 622 MB."""


def check_url(url: str, policy: ImagePolicy, param: str = "image_url") -> None:
    """Refuse, without any I/O, a URL this server will not read: ``data:`` always goes, an
    ``http(s)`` URL only when the policy allows remote images."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "data" or (scheme in ("http", "https") and policy.remote):
        return
    raise InvalidRequest(
        "Send images inline as data: URLs; fetching remote image URLs is disabled on this server.",
        param=param,
        code="remote_images_disabled" if scheme in ("http", "https") else "invalid_image_url",
    )


def image_bytes(url: str, policy: ImagePolicy = ImagePolicy(), param: str = "image_url") -> bytes:
    """The image file a URL names, checked to decode (blocking: it may fetch the URL)."""
    check_url(url, policy, param)
    if url.split(":", 1)[0].lower() == "data":
        _, _, payload = url.partition(",")
        try:
            raw = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(f"the image is not valid base64: {exc}", param=param, code="invalid_image") from None
    else:
        raw = fetch(url, timeout_s=policy.timeout_s, max_bytes=policy.max_bytes, allow=policy.allow, param=param)
    try:
        _check_decodes(raw, policy.max_pixels, param)
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"the image could not be decoded: {exc}", param=param, code="invalid_image") from None
    return raw


def _check_decodes(raw: bytes, max_pixels: int, param: str) -> None:
    from PIL import Image

    try:
        opened = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError as exc:  # PIL's own, far higher bound
        raise InvalidRequest(f"the image is too large: {exc}", param=param, code="image_too_large") from None
    with opened as image:
        width, height = image.size
        if width * height > max_pixels:
            raise InvalidRequest(
                f"the image is {width}×{height} pixels; at most {max_pixels} (limits.max_image_pixels)",
                param=param,
                code="image_too_large",
            )
        image.load()
