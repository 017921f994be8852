"""Streamed speech over a real socket: chunked audio that starts with a valid page, and a
client that hangs up mid-stream leaves no lease behind (the model stays evictable)."""

from __future__ import annotations

import httpx
import pytest

from llmux.audio.decode import decode_audio
from tests.support.http import DEMO_KEY, demo_app
from tests.support.server import serve, wait_for

pytestmark = pytest.mark.slow

LONG = "\n".join(f"This is sentence number {i}, spoken on its own line." for i in range(40))


def _leases(client: httpx.Client) -> int:
    return sum(m["leases"] for m in client.get("/health").json()["loaded"])


def test_stream_arrives_in_pieces_and_hanging_up_releases_the_lease() -> None:
    app = demo_app()
    with serve(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {DEMO_KEY}"}, timeout=60) as client:
        body = {"model": "hibari", "input": LONG, "voice": "heart", "response_format": "opus", "stream": True}
        with client.stream("POST", "/v1/audio/speech", json=body) as response:
            assert response.status_code == 200 and response.headers["content-type"] == "audio/ogg"
            assert "content-length" not in response.headers
            first = next(response.iter_bytes())
            assert first.startswith(b"OggS")
        wait_for(lambda: _leases(client) == 0, 30, "the lease to be released after the hang-up")

        short = {"model": "hibari", "input": "Short and complete.", "voice": "heart", "response_format": "mp3", "stream": True}
        with client.stream("POST", "/v1/audio/speech", json=short) as response:
            audio = b"".join(response.iter_bytes())
        assert 1.0 < decode_audio(audio).size / 16_000 < 3.0
