"""The dashboard (``/ui``) in a real headless Chromium against a real ``llmux serve`` of the demo.

``clients/browser/dashboard.mjs`` (playwright-core from npm, Debian's ``chromium``) signs in with a
wrong key and then the demo's admin key, reads the VRAM bar (the model the server was told to
preload is on it), presses Load on SmolLM2 and waits for it to become resident on the bar, pins it,
signs out. Screenshots go to this test's tmp dir, or ``$LLMUX_DASHBOARD_OUT`` (printed; ``pytest -s``
shows the paths).

``make test`` installs both (``make browser``). Where they are missing the test is skipped, except
under CI (``CI`` set), where a missing browser is a failure rather than a silent skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
SCRIPT = ROOT / "clients" / "browser" / "dashboard.mjs"
CHROMIUM = Path(os.environ.get("LLMUX_CHROMIUM", "/usr/bin/chromium"))
ADMIN_KEY = "sk-llmux-demo-admin-not-a-secret"


def _missing() -> str | None:
    if not shutil.which("node"):
        return "node is not installed"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (make browser: apt-get install chromium)"
    if not (SCRIPT.parent / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is missing (make browser: npm ci --prefix clients/browser)"
    return None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the dashboard test must run in CI: {missing}")
        pytest.skip(missing)
    config = tmp_path / "config"
    shutil.copytree(DEMO, config)
    models = (config / "models.yaml").read_text().replace("threads: 2", "threads: 1")
    models = models.replace("models_dir: .", f"models_dir: {DEMO}")
    (config / "models.yaml").write_text(models + "\npreload: [hibari]\n")
    log = tmp_path / "server.log"
    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmux", "serve", "--config", str(config), "--port", str(port), "--log-json",
             "--allow-demo-keys"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
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
        yield url, tmp_path
    finally:
        process.terminate()
        process.wait(30)


def test_the_dashboard_shows_residency_and_loads_a_model_from_the_page(server: tuple[str, Path]) -> None:
    url, tmp = server
    shots = Path(os.environ["LLMUX_DASHBOARD_OUT"]) if os.environ.get("LLMUX_DASHBOARD_OUT") else tmp / "screenshots"
    args = {"url": url, "key": ADMIN_KEY, "load": "smollm2-135m", "out": str(shots), "timeoutMs": 45000}
    done = subprocess.run(["node", str(SCRIPT), json.dumps(args)], cwd=SCRIPT.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print("dashboard screenshots:", *result["screenshots"], sep="\n  ")
    assert "error" not in result, result
    assert result["pageErrors"] == [], result["pageErrors"]
    assert not [line for line in result["console"] if "Content Security Policy" in line], result["console"]
    assert "not an admin key" in result["wrongKey"] or "invalid API key" in result["wrongKey"], result["wrongKey"]
    assert result["models"][:3] == ["smollm2-135m", "whisper-tiny-en", "hibari"]  # config order
    assert result["barBefore"] == [{"model": "hibari", "state": "ready"}]
    assert "unavailable" in result["usage"] or "usage" in result["usage"].lower()
    assert result["keyInStorage"] is True
    assert result["loadedState"] == "ready"
    assert {"model": "smollm2-135m", "state": "ready"} in result["barAfter"]
    assert result["swaps"][0][1] == "smollm2-135m" and result["swaps"][0][3] == "loaded"
    assert result["keyAfterSignOut"] is None
    assert len(result["screenshots"]) == 4 and all(Path(p).stat().st_size > 0 for p in result["screenshots"])
    status = httpx.get(f"{url}/v1/admin/models", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10).json()
    smollm2 = next(m for m in status["models"] if m["id"] == "smollm2-135m")
    assert smollm2["state"] == "ready" and smollm2["pinned"] is True  # what the page did, the server did
