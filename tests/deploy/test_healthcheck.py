"""The container's health check asks ``/health/ready`` (issue 10): it is 503 while llmux shuts
down, so Podman stops routing to a draining container; ``/health`` answers 200 while degraded."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_containerfile_healthcheck_asks_for_readiness() -> None:
    text = (ROOT / "Containerfile").read_text()
    check = re.search(r"^HEALTHCHECK\b(?:.*\\\n)*.*$", text, re.MULTILINE)
    assert check, "the Containerfile has no HEALTHCHECK"
    assert re.search(r"/health/ready\b", check.group(0)), check.group(0)
