"""Remote image URLs cannot reach internal addresses (issue 10, SSRF), at any redirect hop, and
one fetch is bounded in time and size however the server behaves. Real HTTP servers on
loopback addresses play the internal host, the redirector and the trickler."""

from __future__ import annotations

import dataclasses
import http.server
import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx
import msgspec
import pytest

from llmux.app import create_app
from llmux.chat.fetch import networks
from llmux.chat.images import ImagePolicy, image_bytes
from llmux.protocol.errors import InvalidRequest
from llmux.registry import ApiKeysFile, Registry
from tests.support.backends import instant_factory
from tests.support.server import serve, wait_for


def png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def server(handle: Callable[[http.server.BaseHTTPRequestHandler], None], host: str = "127.0.0.1") -> Iterator[Any]:
    """An HTTP server whose every GET is ``handle(request)``; ``.hits`` counts them."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            handle(self)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.hits = hits  # type: ignore[attr-defined]
    httpd.url = f"http://{host}:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def serve_png(request: http.server.BaseHTTPRequestHandler) -> None:
    body = png()
    request.send_response(200)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def refused(url: str, policy: ImagePolicy) -> str:
    with pytest.raises(InvalidRequest) as info:
        image_bytes(url, policy, param="messages[0].content[0].image_url")
    assert info.value.param == "messages[0].content[0].image_url"
    return str(info.value.code)


REMOTE = ImagePolicy(remote=True, timeout_s=5)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
        "http://10.0.0.1/x.png",
        "http://192.168.1.1/x.png",
        "http://100.64.0.1/x.png",  # carrier-grade NAT
        "http://[fd00:ec2::254]/x.png",
        "http://[::ffff:127.0.0.1]/x.png",
        "http://0.0.0.0/x.png",
        "http://localhost/x.png",
    ],
)
def test_internal_addresses_are_refused_before_any_connection(url: str) -> None:
    assert refused(url, REMOTE) == "image_url_not_allowed"


def test_a_loopback_server_is_never_asked() -> None:
    with server(serve_png) as internal:
        assert refused(f"{internal.url}/x.png", REMOTE) == "image_url_not_allowed"
        assert internal.hits == []


def test_a_redirect_to_an_internal_address_is_refused_at_that_hop() -> None:
    """127.0.0.2 plays a permitted (LAN) image host that redirects to 127.0.0.1."""
    with server(serve_png) as internal:

        def redirect(request: http.server.BaseHTTPRequestHandler) -> None:
            request.send_response(302)
            request.send_header("Location", f"{internal.url}/secret")
            request.send_header("Content-Length", "0")
            request.end_headers()

        with server(redirect, host="127.0.0.2") as lan:
            policy = ImagePolicy(remote=True, allow=networks(["127.0.0.2/32"]), timeout_s=5)
            assert refused(f"{lan.url}/cat.png", policy) == "image_url_not_allowed"
            assert lan.hits == ["/cat.png"]
            assert internal.hits == []
            # With both networks allowed the same redirect is followed to the image.
            both = ImagePolicy(remote=True, allow=networks(["127.0.0.0/8"]), timeout_s=5)
            assert image_bytes(f"{lan.url}/cat.png", both) == png()
            assert internal.hits == ["/secret"]


def test_a_redirect_loop_ends() -> None:
    def loop(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(307)
        request.send_header("Location", "/again")
        request.send_header("Content-Length", "0")
        request.end_headers()

    with server(loop) as looping:
        policy = ImagePolicy(remote=True, allow=networks(["127.0.0.1/32"]), timeout_s=5)
        assert refused(f"{looping.url}/x.png", policy) == "image_fetch_failed"
        assert len(looping.hits) == 6  # the first request and five redirects


OUTCOME: list[str] = []


def trickle(request: http.server.BaseHTTPRequestHandler, data: bytes) -> None:
    """``data`` a byte every 50 ms (30 s for 600 bytes), unless the client hangs up first."""
    for byte in data:
        try:
            request.wfile.write(bytes([byte]))
            request.wfile.flush()
        except OSError:
            OUTCOME.append("cut")
            return
        time.sleep(0.05)
    OUTCOME.append("finished")


HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
TRICKLES = {"body": HEAD + b"x" * 600, "headers": b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 600}


@pytest.mark.parametrize("data", TRICKLES.values(), ids=TRICKLES.keys())
def test_a_trickling_server_cannot_hold_the_fetch_past_its_deadline(data: bytes) -> None:
    """A byte every 50 ms never trips a per-read socket timeout; the fetch's one deadline ends
    it, and the server sees the hang-up long before it would have finished."""
    OUTCOME.clear()
    with server(lambda request: trickle(request, data)) as slow:
        policy = ImagePolicy(remote=True, allow=networks(["127.0.0.1/32"]), timeout_s=1.0)
        assert refused(f"{slow.url}/x.png", policy) == "image_fetch_timeout"
        wait_for(lambda: OUTCOME, timeout_s=60, what="the trickler to stop")
    assert OUTCOME == ["cut"]


def test_size_is_bounded_with_or_without_a_content_length() -> None:
    def big(request: http.server.BaseHTTPRequestHandler, announce: bool) -> None:
        request.send_response(200)
        if announce:
            request.send_header("Content-Length", str(10**9))
        request.end_headers()
        with suppress(OSError):
            request.wfile.write(b"x" * 300_000)

    for announce in (True, False):
        with server(lambda r, a=announce: big(r, a)) as host:  # type: ignore[misc]
            policy = ImagePolicy(remote=True, allow=networks(["127.0.0.1/32"]), max_bytes=100_000, timeout_s=5)
            assert refused(f"{host.url}/x.png", policy) == "image_too_large"


def test_an_allowed_lan_host_serves_its_image() -> None:
    with server(serve_png) as lan:
        policy = ImagePolicy(remote=True, allow=networks(["127.0.0.1/32"]), timeout_s=5)
        assert image_bytes(f"{lan.url}/x.png", policy) == png()


def limits_registry(reference: Registry, **limits: Any) -> Registry:
    return dataclasses.replace(reference, limits=msgspec.structs.replace(reference.limits, **limits))


def test_over_http_an_internal_url_is_a_400_naming_the_part_and_nothing_loads(
    reference: Registry, keys: ApiKeysFile
) -> None:
    app = create_app(limits_registry(reference, remote_images=True), keys, factory=instant_factory())
    body = {
        "model": "Qwen3.5-4B-Instruct",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "PLACEHOLDER"}}]}],
    }
    with server(serve_png) as internal, serve(app) as url:
        body["messages"][0]["content"][0]["image_url"]["url"] = f"{internal.url}/x.png"  # type: ignore[index]
        key = keys.keys[0].key
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "messages[0].content[0].image_url"
        assert r.json()["error"]["code"] == "image_url_not_allowed"
        assert internal.hits == []
        assert all(m.state == "unloaded" for m in app.state.services.controller.status())


def test_remote_images_allow_must_be_networks() -> None:
    from llmux.registry.config import Limits

    assert msgspec.convert({"remote_images_allow": ["192.168.1.0/24", "fd00::/8"]}, Limits).remote_images_allow
    with pytest.raises(msgspec.ValidationError, match="remote_images_allow"):
        msgspec.convert({"remote_images_allow": ["not-a-network"]}, Limits)
