"""The warm host-RAM tier through a real uvicorn server with real tiny transformers models (issue
12): a request for a second LLM parks the first in host RAM instead of unloading it, ``/health``
and ``/v1/models`` show it parked, and a later request un-parks it — the same weights answer the
same greedy text, and ``/metrics`` counts an un-park, not a second load."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import yaml

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_models
from tests.fixtures.chat_backends import tiny_dir  # noqa: F401
from tests.fixtures.tiny_models import build_gpt_oss, build_qwen35
from tests.support.server import serve

pytestmark = pytest.mark.slow
import transformers  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip

KEY = "sk-test-parking-0123456789"
ADMIN = "sk-test-parking-admin-0123456789"


@pytest.fixture(scope="module")
def server(tiny_dir: Path) -> Iterator[str]:  # noqa: F811
    options = {"device": "cpu", "threads": 1}
    config = {
        "budget_gb": 8, "host_ram_budget_gb": 4, "models_dir": str(tiny_dir),
        "physical": {
            "tiny-qwen": {"type": "llm", "backend": "transformers", "family": "qwen3.5", "vram_gb": 0.1,
                          "weights": str(build_qwen35(tiny_dir / "parking-qwen")), "options": options},
            "tiny-oss": {"type": "llm", "backend": "transformers", "family": "gpt-oss", "vram_gb": 0.1,
                         "weights": str(build_gpt_oss(tiny_dir / "parking-oss")), "options": options},
        },
        "virtual": {
            "qwen": {"physical": "tiny-qwen", "behaviour": {"thinking": False}},
            "oss": {"physical": "tiny-oss", "behaviour": {"reasoning_effort": "low"}},
        },
    }
    path = tiny_dir / "parking-models.yaml"
    path.write_text(yaml.safe_dump(config))
    keys = ApiKeysFile(keys=(ApiKey(name="t", key=KEY), ApiKey(name="ops", key=ADMIN, role="admin")))
    app = create_app(load_models(path), keys)
    with serve(app) as url:
        yield url


def states(http: httpx2.Client) -> dict[str, Any]:
    health = http.get("/health").json()
    return {"models": {m["id"]: m for m in health["loaded"]}, "host_ram": health["host_ram"]}


def phase_count(http: httpx2.Client, model: str, phase: str) -> float:
    metrics = http.get("/metrics").text
    pattern = rf'llmux_switch_phase_seconds_count\{{model="{model}",phase="{phase}"\}} (\S+)'
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


def test_a_swap_parks_the_llm_and_a_later_request_unparks_it(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    http = httpx2.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)

    def ask(model: str) -> str:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=6, temperature=0
        )
        return reply.choices[0].message.content or ""

    first = ask("qwen")
    assert states(http)["models"]["tiny-qwen"]["state"] in ("ready", "serving")

    ask("oss")  # one LLM at a time: qwen leaves the (simulated) VRAM for host RAM
    now = states(http)
    qwen = now["models"]["tiny-qwen"]
    assert qwen["state"] == "parked" and qwen["leases"] == 0 and qwen["host_gb"] > 0
    assert now["models"]["tiny-oss"]["state"] in ("ready", "serving")
    assert now["host_ram"]["parked"] == ["tiny-qwen"] and now["host_ram"]["used_gb"] == qwen["host_gb"]
    cards = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert cards["qwen"]["status"]["value"] == "parked" and cards["oss"]["status"]["value"] == "loaded"
    assert cards["qwen"]["context_length"] == 2048  # still known: the loaded model is in host RAM
    vram = http.get("/health").json()["vram"]
    assert vram["used_gb"] == now["models"]["tiny-oss"]["vram_gb"]  # a parked model holds no VRAM

    again = ask("qwen")  # un-parked: the same weights, the same greedy answer
    assert again == first
    now = states(http)
    assert now["models"]["tiny-qwen"]["state"] in ("ready", "serving")
    assert now["models"]["tiny-oss"]["state"] == "parked"
    assert now["host_ram"]["parked"] == ["tiny-oss"]
    assert phase_count(http, "tiny-qwen", "load") == 1 and phase_count(http, "tiny-qwen", "unpark") == 1
    assert phase_count(http, "tiny-oss", "park") == 1
    qwen = now["models"]["tiny-qwen"]
    assert (qwen["loads"], qwen["unparks"], qwen["host_gb"]) == (1, 1, 0)
    admin = http.get("/v1/admin/models", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert {m["id"]: m["state"] for m in admin["models"]}["tiny-oss"] == "parked"
    assert admin["host_ram"]["parked"] == ["tiny-oss"] and admin["host_ram"]["budget_gb"] == 4
    http.close()
