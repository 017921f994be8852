"""OpenAI request messages -> the message dicts chat templates expect.

Templates are written against transformers' conventions, not OpenAI's wire format:
tool-call arguments are mappings (Qwen3.5 iterates ``arguments|items``; gpt-oss applies
``tojson`` and would double-encode a string), content is a string (images are
``{"type": "image"}`` parts, the pixels travel separately), and gpt-oss reads an earlier
turn's reasoning from ``thinking`` where OpenAI clients send ``reasoning_content``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import json_repair

from llmux.errors import InvalidRequest


@dataclass
class TemplateInput:
    messages: list[dict[str, Any]]
    images: list[bytes] = field(default_factory=list)
    """Encoded image files (PNG, JPEG, ...), in the order their parts appear."""


def _arguments(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw if raw is not None else {}
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        value = json_repair.loads(raw)
    return value if isinstance(value, dict) else {}


def _text_of(parts: list[dict[str, Any]]) -> str:
    return "".join(p.get("text", "") for p in parts if p.get("type") == "text")


@dataclass(frozen=True)
class ImagePolicy:
    remote: bool = False
    """Fetch ``http(s)`` URLs (``limits.remote_images``). Off by default: SSRF."""
    max_bytes: int = 20 * 2**20
    timeout_s: float = 10.0


def image_bytes(url: str, policy: ImagePolicy = ImagePolicy()) -> bytes:
    """The image file a URL names, checked to decode: a ``data:`` URL always, an ``http(s)``
    URL only when the policy allows remote images (the service refuses them earlier too)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "data":
        _, _, payload = url.partition(",")
        try:
            raw = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(f"the image is not valid base64: {exc}", param="image_url", code="invalid_image") from None
    elif scheme in ("http", "https") and policy.remote:
        raw = _fetch(url, policy)
    else:
        raise InvalidRequest("send images inline as data: URLs", param="image_url", code="invalid_image_url")
    try:
        to_pil(raw)
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"the image could not be decoded: {exc}", param="image_url", code="invalid_image") from None
    return raw


def _fetch(url: str, policy: ImagePolicy) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=policy.timeout_s) as response:  # noqa: S310 (scheme checked)
            raw = response.read(policy.max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InvalidRequest(f"the image URL could not be fetched: {exc}", param="image_url", code="image_fetch_failed") from None
    if len(raw) > policy.max_bytes:
        raise InvalidRequest("the image is too large", param="image_url", code="image_too_large")
    return raw


def to_pil(raw: bytes) -> Any:
    from PIL import Image

    image = Image.open(io.BytesIO(raw))
    image.load()
    return image.convert("RGB")


def _content(content: Any, images: list[bytes], vision: bool, placeholder: dict[str, Any], policy: ImagePolicy) -> Any:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not vision or not any(p.get("type") == "image_url" for p in content):
        return _text_of(content)
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            parts.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            images.append(image_bytes(part["image_url"]["url"], policy))
            parts.append(dict(placeholder))
    return parts


IMAGE_PART = {"type": "image"}


def has_images(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"]) for m in messages
    )


def template_input(
    messages: list[dict[str, Any]],
    *,
    family: str | None,
    vision: bool,
    image_part: dict[str, Any] = IMAGE_PART,
    policy: ImagePolicy = ImagePolicy(),
) -> TemplateInput:
    """``image_part`` replaces each image: transformers processors expand ``{"type": "image"}``,
    llama.cpp's multimodal tokenizer looks for its media marker in the text."""
    out = TemplateInput(messages=[])
    for raw in messages:
        message = {k: v for k, v in raw.items() if v is not None}
        message["content"] = _content(raw.get("content"), out.images, vision, image_part, policy)
        if raw.get("tool_calls"):
            message["tool_calls"] = [
                {**call, "function": {**call["function"], "arguments": _arguments(call["function"].get("arguments"))}}
                for call in raw["tool_calls"]
            ]
        reasoning = message.pop("reasoning_content", None)
        if reasoning and family == "gpt-oss":
            # gpt-oss's template renders a tool-calling turn's text as its analysis and refuses
            # both at once: the reasoning goes only when there is no other text.
            if not (message.get("tool_calls") and message["content"]):
                message["thinking"] = reasoning
        elif reasoning:
            message["reasoning_content"] = reasoning
        out.messages.append(message)
    return out
