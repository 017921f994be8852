"""``GET /v1/admin/events`` over real HTTP (uvicorn on loopback) with the demo's real small
models: a swap told in order, a subscriber that reads nothing never holds a swap up, and a
client that leaves frees its subscription."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmux.api import dashboard
from llmux.app import create_app
from llmux.registry import load_keys
from tests.support.http import DEMO, DEMO_KEY, demo_registry
from tests.support.server import serve, wait_for

pytestmark = pytest.mark.slow

ADMIN_KEY = "sk-llmux-demo-admin-not-a-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READERS: list[Reader] = []
"""Every reader of the current test: its server stops only once they have all stopped reading."""


class Reader:
    """Reads one event stream in a thread; ``events`` grows as they arrive.

    The thread owns its client: ``close`` asks it to stop and waits until it has closed the
    stream itself (it sees the flag at the next line, and the feed sends a keep-alive comment
    every ``keepalive_s``), so no socket is closed under a blocked read and no thread is left
    reading when the server stops. What went wrong in the thread is raised by ``close``."""

    def __init__(self, url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.names: list[str] = []
        self.comments = 0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()
        READERS.append(self)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, url: str) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(60, read=None)) as client:
                self._read(client, url)
        except BaseException as exc:  # raised by close(), in the test's own thread
            self._error = exc

    def _read(self, client: httpx.Client, url: str) -> None:
        with client.stream("GET", f"{url}/v1/admin/events", headers=ADMIN) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            name = None
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    self.names.append(name or "")
                    self.events.append(json.loads(line.removeprefix("data: ")))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def stopped(self) -> bool:
        """Asked to stop, and its thread has closed the stream and ended."""
        return self._stop.is_set() and not self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the reader thread did not stop"
        if self._error is not None:
            raise self._error


@pytest.fixture
def server() -> Iterator[tuple[str, Any]]:
    # 0.45 GB holds SmolLM2 (0.3) or Whisper tiny (0.2) but not both: loading one evicts the other.
    registry = dataclasses.replace(demo_registry(), budget_gb=0.45)
    app = create_app(registry, load_keys(DEMO / "api_keys.yaml"), keepalive_s=0.2)
    with serve(app) as url:
        yield url, app.state.services.controller
        closed = [r for r in READERS if r._stop.is_set()]
        reading = [r for r in closed if not r.stopped]
        for r in READERS:  # a failed test's readers too, before the server goes
            r._stop.set()
            r._thread.join(60)
        READERS.clear()
        assert not reading, f"{len(reading)} of {len(closed)} closed readers still reading as the server stops"


def admin(url: str, action: str, model: str) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/admin/models/{model}/{action}", headers=ADMIN, timeout=120)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_feed_needs_an_admin_key(server: tuple[str, Any]) -> None:
    url, _ = server
    assert httpx.get(f"{url}/v1/admin/events", timeout=10).status_code == 401
    user = {"Authorization": f"Bearer {DEMO_KEY}"}
    assert httpx.get(f"{url}/v1/admin/events", headers=user, timeout=10).status_code == 403


def test_a_swap_is_told_in_order(server: tuple[str, Any]) -> None:
    url, controller = server
    reader = Reader(url)
    try:
        wait_for(lambda: reader.events, 30, "the snapshot")
        first = reader.events[0]
        assert first["type"] == "snapshot" and reader.names[0] == "snapshot"
        assert {m["id"]: m["state"] for m in first["models"]}.items() >= dict.fromkeys(
            ("smollm2-135m", "whisper-tiny-en", "hibari"), "unloaded"
        ).items()
        assert first["budget_gb"] == 0.45 and first["used_gb"] == 0

        admin(url, "load", "smollm2")
        admin(url, "load", "whisper-tiny-en")  # evicts SmolLM2 to make room
        wait_for(lambda: len(reader.of("swap_finished")) == 2, 60, "two swaps finished")

        events = reader.events[1:]
        assert [e["seq"] for e in events] == list(range(first["seq"] + 1, first["seq"] + 1 + len(events)))
        assert reader.names[1:] == [e["type"] for e in events]
        # The second swap, as a script would follow it: drain and unload the victim, then load.
        second = events[next(i for i, e in enumerate(events) if e["type"] == "swap_started" and e["swap"] == 2) :]
        steps = [
            (e["type"], e.get("model"), e.get("event"))
            for e in second
            if e["type"] in ("swap_started", "state_changed", "swap_finished")
        ]
        assert steps[:6] == [
            ("swap_started", None, None),
            ("state_changed", "smollm2-135m", "evict"),
            ("state_changed", "smollm2-135m", "evicted"),
            ("state_changed", "whisper-tiny-en", "load"),
            ("state_changed", "whisper-tiny-en", "loaded"),
            ("swap_finished", None, None),
        ]
        started, finished = second[0], reader.of("swap_finished")[1]["record"]
        assert started["target"] == "whisper-tiny-en"
        assert started["victims"] == [{"model": "smollm2-135m", "reason": "make_room"}]
        assert finished["outcome"] == "loaded" and finished["victims"] == started["victims"]
        assert finished["duration_s"] > 0
        loading = next(e for e in second if e.get("event") == "load")
        assert (loading["previous"], loading["state"]) == ("unloaded", "loading")
        # The admin load's own lease, taken and given back once the model is ready.
        leases = [(e["model"], e["leases"], e["acquired"]) for e in second if e["type"] == "lease"]
        assert leases == [("whisper-tiny-en", 1, True), ("whisper-tiny-en", 0, False)]
        waiting = [(e["model"], e["waiting"]) for e in second if e["type"] == "waiting"]
        assert waiting[-1] == ("whisper-tiny-en", 0)
        # A reconnecting script sees the same state in its snapshot, with the recent swaps.
        with Reader(url) as late:
            wait_for(lambda: late.events, 30, "a second snapshot")
            snap = late.events[0]
            assert {m["id"]: m["state"] for m in snap["models"]}["whisper-tiny-en"] == "ready"
            assert [s["target"] for s in snap["recent_swaps"]] == ["smollm2-135m", "whisper-tiny-en"]
        # A model that loaded before: its next load tells how long that took (the progress estimate).
        admin(url, "load", "smollm2")
        wait_for(lambda: len(reader.of("swap_finished")) == 3, 60, "a third swap")
        again = [e for e in reader.of("state_changed") if e["event"] == "load"]
        assert [e["expected_s"] is not None for e in again] == [False, False, True]
        assert again[-1]["expected_s"] > 0
        wait_for(lambda: reader.comments > 0, 30, "a keep-alive comment on a quiet stream")
    finally:
        reader.close()
    assert controller.swaps == 3


def dechunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body (as far as it has arrived)."""
    out, rest = b"", body
    while b"\r\n" in rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        if len(rest) < size + 2:
            break
        rest = rest[size + 2 :]
    return out


def test_a_subscriber_that_reads_nothing_holds_no_swap_up(server: tuple[str, Any]) -> None:
    url, controller = server
    host, port = url.removeprefix("http://").split(":")
    stuck = socket.create_connection((host, int(port)))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stuck.sendall(f"GET /v1/admin/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\r\n".encode())
    try:
        wait_for(lambda: len(controller.events.subscribers) == 1, 30, "the stuck subscriber")
        for model in ("smollm2", "whisper-tiny-en", "smollm2", "whisper-tiny-en"):
            admin(url, "load", model)  # each returns once its swap is done
        assert controller.swaps == 4
        assert len(controller.events.subscribers) == 1  # still there, never waited for
        # What it reads now is in order: every event, or a resync snapshot where it fell behind.
        stuck.settimeout(30)
        data = body = b""
        while body.count(b"event: swap_finished") < 4 and b'"resync":true' not in body:
            chunk = stuck.recv(65536)
            assert chunk, "the stream ended"
            data += chunk
            body = dechunk(data.partition(b"\r\n\r\n")[2])
        complete = body[: body.rfind(b"\n\n") + 2]  # the last frame may still be arriving
        seqs = [json.loads(line[6:])["seq"] for line in complete.split(b"\n") if line.startswith(b"data: ")]
        assert seqs and seqs == sorted(seqs)
    finally:
        stuck.close()
    wait_for(lambda: not controller.events.subscribers, 30, "the stuck subscriber to be dropped")


def test_a_client_that_leaves_frees_its_subscription(server: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    url, controller = server
    monkeypatch.setattr(dashboard, "MAX_SUBSCRIBERS", 3)
    readers = [Reader(url) for _ in range(3)]
    wait_for(lambda: all(r.events for r in readers), 30, "three snapshots")
    assert len(controller.events.subscribers) == 3
    refused = httpx.get(f"{url}/v1/admin/events", headers=ADMIN, timeout=10)  # bounded: a 4th is refused
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_streams"
    assert refused.headers["retry-after"] == "5"
    for r in readers:
        r.close()
    wait_for(lambda: not controller.events.subscribers, 30, "every subscription to be freed")
    admin(url, "load", "hibari")  # publishing to nobody is fine


def test_a_reader_that_falls_behind_is_resynced_with_a_snapshot(server: tuple[str, Any]) -> None:
    # One finished load publishes several events in one go (loaded, swap finished, the waiter's
    # lease...), more than a queue of two holds before the stream's writer runs again.
    url, controller = server
    controller.events.maxsize = 2
    reader = Reader(url)
    try:
        wait_for(lambda: reader.events, 30, "the snapshot")
        admin(url, "load", "whisper-tiny-en")
        admin(url, "load", "smollm2")
        wait_for(lambda: any(e.get("resync") for e in reader.events), 60, "a resync snapshot")
        seqs = [e["seq"] for e in reader.events]
        assert seqs == sorted(seqs)
        for before, after in zip(reader.events, reader.events[1:], strict=False):
            # Either the next event, or a snapshot that includes everything up to its seq.
            assert after["seq"] == before["seq"] + 1 or (after["type"] == "snapshot" and after["resync"])
        wait_for(lambda: controller.queue_depth == 0 and controller._swap is None, 30, "the swaps to settle")
        wait_for(lambda: reader.events[-1]["seq"] == controller.events.seq, 30, "the reader to catch up")
        last = max(i for i, e in enumerate(reader.events) if e["type"] == "snapshot")
        told = {m["id"]: m["state"] for m in reader.events[last]["models"]}
        for e in reader.events[last + 1 :]:
            if e["type"] == "state_changed":
                told[e["model"]] = e["state"]
        assert told == {m.id: m.state for m in controller.status()}
    finally:
        reader.close()
