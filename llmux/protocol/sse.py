"""Server-sent events framing: ``data: {json}\\n\\n`` per event, ``data: [DONE]`` at the end.

Pre-framed bytes, not Litestar's ``ServerSentEvent``: that re-encodes every chunk and frames
with ``\\r\\n``, at a third of the chunk rate.
"""

from __future__ import annotations

import msgspec

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
"""An SSE comment: clients reset their idle timers on it and show nothing."""

_encode = msgspec.json.Encoder().encode


def sse(payload: object) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"
