"""``GET /ui``: the live dashboard — one HTML page, one stylesheet, one small script, no build
step and nothing fetched from elsewhere (it works offline, in a browser with no internet).

The page itself holds no data, so it needs no key; everything it shows comes from the admin API
(``/v1/admin/models``, ``/v1/admin/events``, ``/v1/admin/usage``) with the admin key the operator
types into its login form. How the key travels, and why (``static/dashboard.js`` says the same):

- A browser cannot send an ``Authorization`` header on a navigation, and a cookie would be sent
  by the browser on its own (cross-site requests included: CSRF). The key is kept in the tab's
  ``sessionStorage`` (gone when the tab closes) and the script sends it as a bearer header.
- ``EventSource`` cannot send headers, and a key in a URL ends up in logs and the history: the
  script reads the event stream with ``fetch()`` and parses the SSE frames itself.

A strict Content-Security-Policy (same-origin script and style only, no inline code) keeps an
injected model name or error text from ever running as script; the script writes text, never HTML.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import Controller, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from llmux import __version__

STATIC = Path(__file__).with_name("static")
FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    text = (STATIC / name).read_text(encoding="utf-8")
    return text.replace("{{version}}", __version__).encode()


class UiController(Controller):
    path = "/ui"
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def page(self) -> Response[bytes]:
        return Response(_read("dashboard.html"), media_type="text/html; charset=utf-8", headers=HEADERS)

    @get("/{name:str}", sync_to_thread=False)
    def asset(self, name: FromPath[str]) -> Response[bytes]:
        if name not in FILES:
            raise NotFoundException(f"no file {name!r} under /ui")
        return Response(_read(name), media_type=FILES[name], headers=HEADERS)
