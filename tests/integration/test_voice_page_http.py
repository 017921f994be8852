"""GET /voice: a public, self-contained page (nothing fetched from elsewhere: it works offline)
that talks to /v1/realtime with the browser subprotocol form of the key."""

from __future__ import annotations

import re

from tests.support.http import demo_app, raw_client


async def test_the_voice_page_is_public_and_self_contained() -> None:
    async with raw_client(demo_app(), key=None) as http:
        page = await http.get("/voice")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "/v1/realtime" in html and "openai-insecure-api-key." in html and '"realtime"' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no script, style or font from elsewhere
    assert "input_audio_buffer.append" in html and "response.audio.delta" in html
