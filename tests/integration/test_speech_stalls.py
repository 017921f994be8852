"""Streamed speech whose clients never read: the streams end by the no-progress timeout, give
their leases back, and meanwhile a chat on another model still answers (issue 10)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import structlog.testing

from llmux.app import create_app
from tests.support import slow_engines as slow
from tests.support.server import serve, wait_for

HEADERS = {"Authorization": f"Bearer {slow.KEY}"}
STREAMS = 2  # on one TTS model: they take their turns, each ended by the stall timeout


def leases(app: Any) -> int:
    return sum(m.leases for m in app.state.services.controller.status())


def speaking_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("speak-")}


def test_unread_speech_streams_stall_out_and_do_not_starve_a_chat_on_another_model(tmp_path: Path) -> None:
    app = create_app(slow.registry(tmp_path, "limits: {stall_timeout_s: 1.0}\n"), slow.KEYS, factory=slow.factory)
    # A tiny receive buffer so an unread stream blocks the server's send sooner.
    small = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    statuses: list[int] = []
    hang_up = threading.Event()
    seen: set[str] = set()
    ran = slow.RAN["speech"]
    with (
        serve(app) as url,
        structlog.testing.capture_logs() as logs,
        httpx.Client(base_url=url, headers=HEADERS, transport=small, timeout=120) as readers,
    ):

        def never_read() -> None:  # opens the stream, reads the headers and nothing else
            body = {"model": "mouth", "input": "x" * 4000, "response_format": "pcm", "stream": True}
            with readers.stream("POST", "/v1/audio/speech", json=body) as response:
                statuses.append(response.status_code)
                hang_up.wait(120)

        clients = [threading.Thread(target=never_read) for _ in range(STREAMS)]
        for c in clients:
            c.start()
        wait_for(lambda: bool(seen.update(speaking_threads())) or slow.RAN["speech"] > ran, 20, "a synthesis")
        chat = {"model": "talk", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        r = httpx.post(f"{url}/v1/chat/completions", json=chat, headers=HEADERS, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"]

        def spoken() -> list[dict[str, Any]]:
            seen.update(speaking_threads())
            return [e for e in logs if e.get("event") == "request.done" and e.get("path") == "/v1/audio/speech"]

        wait_for(lambda: len(spoken()) == STREAMS, 90, "every unread speech stream to end")
        wait_for(lambda: leases(app) == 0, 30, "the speech leases back")
        wait_for(lambda: not speaking_threads(), 30, "the synthesis threads to stop")
        assert httpx.get(f"{url}/health", timeout=30).json()["queue_depth"] == 0
        hang_up.set()
        for c in clients:
            c.join(30)
    assert statuses == [200] * STREAMS
    assert all(e["stalled"] is True and e["cancelled"] is True for e in spoken()), spoken()
    # The synthesis ran on a worker thread named for its model, not on a shared executor.
    assert "speak-mouth" in seen
