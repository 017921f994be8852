"""A misbehaving OpenAI-compatible upstream, for llmux's ``openai`` backend error mapping.

A real HTTP server (``http.server``, a thread per connection) on a loopback port. The first
path segment picks the behaviour, so one server plays every upstream:
``http://127.0.0.1:PORT/<scenario>/v1`` is a model's ``base_url``.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNK = {
    "id": "chatcmpl-hostile",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "upstream-name",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}],
}


class Hostile:
    def __init__(self) -> None:
        self.released = threading.Event()
        """Set at teardown: hanging handlers return."""
        self.disconnected = threading.Event()
        """Set when the ``endless`` stream's client went away (a write failed)."""
        self.hung_up = threading.Event()
        """Set when the ``waiting`` request's client closed its connection before any answer."""
        self.seen: list[dict[str, Any]] = []
        """Every POST: its path, headers and JSON body."""
        self.url = ""


def _handler(state: Hostile) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, media: str = "application/json", **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _event(self, payload: object) -> None:
            self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

        def _start_stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def do_GET(self) -> None:
            scenario = self.path.strip("/").split("/")[0]
            if scenario == "sick":
                self._send(500, b"down")
            else:
                self._send(200, b'{"object": "list", "data": []}')

        def do_POST(self) -> None:
            scenario = self.path.strip("/").split("/")[0]
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            state.seen.append({"path": self.path, "headers": dict(self.headers), "body": body,
                               "raw": raw.decode("latin-1")})
            getattr(self, f"_{scenario}", self._missing)()

        def _missing(self) -> None:
            self._send(404, b'{"error": {"message": "no such scenario"}}')

        def _echo(self) -> None:
            """A completion whose content is the request it got (headers and body)."""
            seen = json.dumps(state.seen[-1])
            answer = {
                "id": "chatcmpl-echo", "object": "chat.completion", "created": 1, "model": "upstream-name",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": seen}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
                "system_fingerprint": "hostile-1",
            }
            self._send(200, json.dumps(answer).encode())

        def _garbage(self) -> None:
            self._send(200, b"this is not json{")

        def _notobject(self) -> None:
            self._send(200, b"[1, 2, 3]")

        def _plainjson(self) -> None:  # a JSON answer to a streamed request
            self._send(200, b'{"object": "chat.completion", "choices": []}')

        def _hang(self) -> None:
            state.released.wait(60)

        def _error400(self) -> None:
            error = {"message": "temperature is too hot", "type": "invalid_request_error", "param": "temperature",
                     "code": "invalid_value"}
            self._send(400, json.dumps({"error": error}).encode())

        def _vllm400(self) -> None:
            self._send(400, b'{"object": "error", "message": "guided_json is malformed", "type": "BadRequestError", "param": null, "code": 400}')

        def _error401(self) -> None:
            self._send(401, b'{"error": {"message": "Invalid API key"}}')

        def _error429(self) -> None:
            self._send(429, b'{"error": {"message": "slow down"}}', Retry_After="7")

        def _error500(self) -> None:
            self._send(500, b"boom", "text/plain")

        def _error503(self) -> None:
            self._send(503, b'{"error": {"message": "loading", "code": "model_loading"}}', Retry_After="3")

        def _cut(self) -> None:  # one event, then the connection drops mid-body
            self._start_stream()
            self._event(CHUNK)
            self.close_connection = True
            self.connection.close()

        def _stall(self) -> None:  # one event, then silence
            self._start_stream()
            self._event(CHUNK)
            state.released.wait(60)

        def _nodone(self) -> None:  # one event, then a clean end without finish_reason or [DONE]
            self._start_stream()
            self._event(CHUNK)
            self._chunk(b"")

        def _donecut(self) -> None:  # one event, then [DONE] without a finish_reason
            self._start_stream()
            self._event(CHUNK)
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

        def _badevent(self) -> None:
            self._start_stream()
            self._event(CHUNK)
            self._chunk(b"data: {not json\n\n")
            self._chunk(b"")

        def _waiting(self) -> None:  # no answer; notices the client going away
            while not state.released.is_set():
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                    state.hung_up.set()
                    return

        def _endless(self) -> None:
            self._start_stream()
            try:
                while not state.released.is_set():
                    self._event(CHUNK)
                    time.sleep(0.02)
            except OSError:
                state.disconnected.set()

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # every model's first health poll connects at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: clients that drop connections are the point here, and a daemon thread that
        prints while the interpreter exits aborts it ("could not acquire lock for stderr")."""


@contextmanager
def hostile_upstream() -> Iterator[Hostile]:
    state = Hostile()
    server = _Server(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
