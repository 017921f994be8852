"""Fetching a remote image URL without becoming an SSRF hole (``limits.remote_images``).

A client that can make the server fetch a URL can make it read the cloud metadata service
(169.254.169.254), an admin port on loopback, or a host on the private network, and get the
answer back in an error message or a model's description of the "image". So each hop is
checked before it is connected to: the host is resolved once, every address it resolves to
must be public (``ipaddress.is_global``) unless it lies in one of the configured networks
(``limits.remote_images_allow``, for a LAN image server), and the connection goes to the
address that was checked (a second DNS answer cannot swap in 127.0.0.1). Redirects are followed
by hand, at most ``MAX_REDIRECTS``, each hop checked the same way. The whole fetch — every
hop, headers and body — shares one deadline and one byte bound, so a server that trickles a
byte a second cannot hold the request past ``timeout_s``.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from llmux.protocol.errors import InvalidRequest

MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """``limits.remote_images_allow`` parsed (the registry has already checked each entry)."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def allowed(address: Address, allow: tuple[Network, ...]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in net for net in allow if net.version == address.version):
        return True
    return address.is_global and not address.is_multicast


class _Deadline:
    def __init__(self, seconds: float, param: str) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds
        self.param = param

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise InvalidRequest(
                f"the image URL did not answer within {self.seconds:g} s", param=self.param, code="image_fetch_timeout"
            )
        return left


def _refused(why: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"the image URL is not allowed: {why}", param=param, code="image_url_not_allowed")


def _resolve(host: str, port: int, allow: tuple[Network, ...], param: str) -> str:
    """The one address this hop connects to, after checking every address the host has."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidRequest(
            f"the image URL's host could not be resolved: {exc}", param=param, code="image_fetch_failed"
        ) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        if not allowed(address, allow):
            raise _refused(f"{host} is a non-public address ({address})", param)
    return str(addresses[0])


def _connection(url: str, deadline: _Deadline, allow: tuple[Network, ...], param: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refused("only http and https URLs with a host are fetched", param)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _resolve(parts.hostname, port, allow, param)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":  # certificate and SNI checked against the host name, not the address
        conn = http.client.HTTPSConnection(
            parts.hostname, port, timeout=deadline.left(), context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=deadline.left())

    def connect_checked(_: Any, timeout: float, source: Any = None) -> socket.socket:
        return socket.create_connection((address, port), timeout, source)

    conn._create_connection = connect_checked  # type: ignore[attr-defined]  # http.client's seam for the socket
    return conn


def _read(response: http.client.HTTPResponse, deadline: _Deadline, limit: int, param: str) -> bytes:
    length = response.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise InvalidRequest("the image is too large", param=param, code="image_too_large")
    body = bytearray()
    while chunk := response.read1(_CHUNK):
        body += chunk
        if len(body) > limit:
            raise InvalidRequest("the image is too large", param=param, code="image_too_large")
        deadline.left()
    deadline.left()  # the watchdog's shutdown reads as the end of the body: it is a timeout
    return bytes(body)


def _watchdog(conn: http.client.HTTPConnection, deadline: _Deadline) -> threading.Timer:
    """Shuts the socket at the deadline: a blocked read returns at once, however slowly the
    server trickles (a socket timeout bounds only the gap between two bytes)."""

    def cut() -> None:
        with contextlib.suppress(OSError):
            if conn.sock is not None:
                conn.sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline.end - time.monotonic()), cut)
    timer.daemon = True
    timer.start()
    return timer


def fetch(url: str, *, timeout_s: float, max_bytes: int, allow: tuple[Network, ...], param: str) -> bytes:
    """The body ``url`` answers with (after redirects); a 400 naming ``param`` for any refusal."""
    deadline = _Deadline(timeout_s, param)
    for _ in range(MAX_REDIRECTS + 1):
        conn = _connection(url, deadline, allow, param)
        watchdog: threading.Timer | None = None
        try:
            conn.connect()
            watchdog = _watchdog(conn, deadline)
            parts = urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", target, headers={"Accept": "image/*"})
            response = conn.getresponse()
            location = response.getheader("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise InvalidRequest(
                    f"the image URL answered HTTP {response.status}", param=param, code="image_fetch_failed"
                )
            return _read(response, deadline, max_bytes, param)
        except (OSError, http.client.HTTPException) as exc:
            deadline.left()  # a socket timeout at the deadline is a timeout, not a failure
            raise InvalidRequest(
                f"the image URL could not be fetched: {exc}", param=param, code="image_fetch_failed"
            ) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            conn.close()
    raise InvalidRequest(
        f"the image URL redirected more than {MAX_REDIRECTS} times", param=param, code="image_fetch_failed"
    )
