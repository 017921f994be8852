"""The dashboard (``/ui``) in a real headless Chromium against a real ``llmux serve`` of the demo.

``clients/browser/dashboard.mjs`` (playwright-core from npm, Debian's ``chromium``) signs in with a
wrong key and then the demo's admin key, reads the VRAM bar (the model the server was told to
preload is on it), presses Load on SmolLM2 and waits for it to become resident on the bar, pins it,
signs out. The config adds two remote upstreams: one a real HTTP server (``tests/support/hostile.py``,
holding one relayed request open), one a closed port: the page's Upstreams section shows the first
up with a request in flight and the second down with its error, and neither's key nor the
credentials in its URL. Screenshots go to this test's tmp dir, or ``$LLMUX_DASHBOARD_OUT`` (printed; ``pytest -s``
shows the paths).

``make test`` installs both (``make browser``). Where they are missing the test is skipped, except
under CI (``CI`` set), where a missing browser is a failure rather than a silent skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.hostile import hostile_upstream
from tests.support.server import free_port, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
SCRIPT = ROOT / "clients" / "browser" / "dashboard.mjs"
CHROMIUM = Path(os.environ.get("LLMUX_CHROMIUM", "/usr/bin/chromium"))
ADMIN_KEY = "sk-llmux-demo-admin-not-a-secret"
USER_KEY = "sk-llmux-demo-not-a-secret"
UPSTREAM_KEY = "sk-upstream-secret-fedcba9876543210"
URL_PASSWORD = "pw-in-the-url-5e3r3t"


def _missing() -> str | None:
    if not shutil.which("node"):
        return "node is not installed"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (make browser: apt-get install chromium)"
    if not (SCRIPT.parent / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is missing (make browser: npm ci --prefix clients/browser)"
    return None


@pytest.fixture
def upstream_url() -> Iterator[str]:
    with hostile_upstream() as hostile:
        yield hostile.url


@pytest.fixture
def server(tmp_path: Path, upstream_url: str) -> Iterator[tuple[str, Path]]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the dashboard test must run in CI: {missing}")
        pytest.skip(missing)
    config = tmp_path / "config"
    shutil.copytree(DEMO, config)
    models = (config / "models.yaml").read_text().replace("threads: 2", "threads: 1")
    models = models.replace("models_dir: .", f"models_dir: {DEMO}")
    # Two remote upstreams: ``waiting`` answers its health poll and never a request; nothing listens
    # on the closed port.
    closed = free_port()
    models = models.replace("\nphysical:\n", (
        "\nphysical:\n"
        f"  far-up: {{type: llm, backend: openai, options: {{base_url: '{upstream_url}/waiting/v1', model: far-name,"
        f" api_key: {UPSTREAM_KEY}, read_timeout_s: 120, health_interval_s: 0.5}}}}\n"
        f"  far-down: {{type: llm, backend: openai, options: {{base_url: 'http://operator:{URL_PASSWORD}@127.0.0.1:{closed}/v1',"
        f" api_key: {UPSTREAM_KEY}, health_interval_s: 0.5, connect_timeout_s: 2}}}}\n"), 1)
    models = models.replace("\nvirtual:\n", "\nvirtual:\n  far-up: {physical: far-up}\n  far-down: {physical: far-down}\n", 1)
    (config / "models.yaml").write_text(models + "\npreload: [hibari]\n")
    log = tmp_path / "server.log"
    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmux", "serve", "--config", str(config), "--port", str(port), "--log-json",
             "--allow-demo-keys", "--data-dir", str(tmp_path / "data")], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def preloaded() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            health = httpx.get(f"{url}/health", timeout=2).json()
        except httpx.TransportError:
            return False
        return any(m["id"] == "hibari" and m["state"] == "ready" for m in health["loaded"])

    try:
        wait_for(preloaded, 60, "llmux serve to answer with hibari preloaded")
        # Some usage for the page to show: the demo key speaks a sentence with the preloaded TTS.
        spoken = httpx.post(f"{url}/v1/audio/speech", headers={"Authorization": f"Bearer {USER_KEY}"}, timeout=60,
                            json={"model": "hibari", "input": "Hello from the dashboard test."})
        assert spoken.status_code == 200, spoken.text
        wait_for(lambda: usage_of(url, "demo"), 30, "the speech to be counted")
        yield url, tmp_path
    finally:
        process.terminate()
        process.wait(30)


def usage_of(url: str, client: str) -> bool:
    report = httpx.get(f"{url}/v1/admin/usage?group_by=client", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                       timeout=10).json()
    return any(row.get("client") == client for row in report["data"])


def upstreams_of(url: str) -> dict[str, dict[str, object]]:
    report = httpx.get(f"{url}/v1/admin/upstreams", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    return {u["id"]: u for u in report.json()["upstreams"]}


def test_the_dashboard_shows_residency_and_loads_a_model_from_the_page(server: tuple[str, Path]) -> None:
    url, tmp = server
    shots = Path(os.environ["LLMUX_DASHBOARD_OUT"]) if os.environ.get("LLMUX_DASHBOARD_OUT") else tmp / "screenshots"
    expected = [{"id": "far-up", "state": "up", "inFlight": 1}, {"id": "far-down", "state": "down"}]
    args = {"url": url, "key": ADMIN_KEY, "load": "smollm2-135m", "out": str(shots), "timeoutMs": 45000,
            "upstreams": expected}
    # One request relayed to far-up and left waiting (its upstream never answers) while the page
    # looks; closing the connection is the client leaving.
    body = b'{"model": "far-up", "messages": [{"role": "user", "content": "hi"}]}'
    relayed = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    try:
        relayed.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        + f"Authorization: Bearer {USER_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        wait_for(lambda: upstreams_of(url)["far-up"]["in_flight"] == 1, 30, "the relay to far-up to be in flight")
        done = subprocess.run(["node", str(SCRIPT), json.dumps(args)], cwd=SCRIPT.parent, capture_output=True,
                              text=True, timeout=120)
    finally:
        relayed.close()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print("dashboard screenshots:", *result["screenshots"], sep="\n  ")
    assert "error" not in result, result
    assert result["pageErrors"] == [], result["pageErrors"]
    assert not [line for line in result["console"] if "Content Security Policy" in line], result["console"]
    assert "not an admin key" in result["wrongKey"] or "invalid API key" in result["wrongKey"], result["wrongKey"]
    assert result["models"][:3] == ["smollm2-135m", "whisper-tiny-en", "hibari"]  # config order
    assert result["barBefore"] == [{"model": "hibari", "state": "ready"}]
    assert "demo" in result["usage"] and "hibari" in result["usage"], result["usage"]  # per key and model
    assert result["keyInStorage"] is True
    assert result["upstreamsHidden"] is False
    rows = {row["id"]: row for row in result["upstreams"]}
    assert list(rows) == ["far-up", "far-down"], result["upstreams"]  # config order
    assert rows["far-up"]["state"] == "up" and rows["far-up"]["inFlight"] == "1" and rows["far-up"]["lastError"] == ""
    assert rows["far-down"]["state"] == "down" and rows["far-down"]["inFlight"] == "0" and rows["far-down"]["lastError"]
    assert "far-name" in rows["far-up"]["cells"]  # the upstream's name for the model
    assert any(re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", cell) for cell in rows["far-down"]["cells"])  # no user:password@
    for secret in (UPSTREAM_KEY, URL_PASSWORD, "operator"):
        assert secret not in result["pageText"], secret
    assert result["loadedState"] == "ready"
    assert {"model": "smollm2-135m", "state": "ready"} in result["barAfter"]
    assert result["swaps"][0][1] == "smollm2-135m" and result["swaps"][0][3] == "loaded"
    assert result["keyAfterSignOut"] is None
    assert len(result["screenshots"]) == 4 and all(Path(p).stat().st_size > 0 for p in result["screenshots"])
    status = httpx.get(f"{url}/v1/admin/models", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10).json()
    smollm2 = next(m for m in status["models"] if m["id"] == "smollm2-135m")
    assert smollm2["state"] == "ready" and smollm2["pinned"] is True  # what the page did, the server did
