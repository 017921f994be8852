"""``/ui`` over HTTP: the page and its two files are served without a key (they hold no data),
with a strict Content-Security-Policy; nothing else is served under /ui; the script parses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.http import demo_app, raw_client

SCRIPT = Path(__file__).resolve().parents[2] / "llmux" / "api" / "static" / "dashboard.js"


async def test_the_page_and_its_files_are_served_with_a_strict_policy() -> None:
    async with raw_client(demo_app(), key=None) as client:
        page = await client.get("/ui")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert '<script src="/ui/dashboard.js" defer></script>' in page.text
        assert "{{version}}" not in page.text and "<script>" not in page.text  # no inline script
        script = await client.get("/ui/dashboard.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert "innerHTML" not in script.text  # server text is written as text, never parsed as HTML
        style = await client.get("/ui/dashboard.css")
        assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
        for path in ("/ui/dashboard.html.bak", "/ui/..%2Fapp.py", "/ui/%2e%2e"):
            missing = await client.get(path)
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found", path


@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")
def test_the_script_parses() -> None:
    done = subprocess.run(["node", "--check", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
