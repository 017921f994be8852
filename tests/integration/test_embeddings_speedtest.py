"""The admin speed test on an embedding model: the same batch on the resident model and on a CPU
copy, counted in inputs. A tiny random BERT on transformers; the host's GPU is claimed by the test
(``gpu_probe``) and ``cuda`` falls back to the CPU, so both runs are real inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_models
from tests.fixtures.chat_backends import tiny_dir  # noqa: F401
from tests.fixtures.tiny_models import build_bert_embedder
from tests.support.http import raw_client

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]
ADMIN = "sk-admin-embeddings-0123456789"


async def test_speedtest_counts_embedded_inputs(tiny_dir: Path) -> None:  # noqa: F811
    config = {"budget_gb": 4, "physical": {"bert": {"type": "embedding", "backend": "transformers", "vram_gb": 0.1,
                                                    "weights": str(build_bert_embedder(tiny_dir / "speed-bert")),
                                                    "options": {"threads": 1}}},
              "virtual": {"bert": {"physical": "bert"}}}
    path = tiny_dir / "speed-models.yaml"
    path.write_text(yaml.safe_dump(config))
    app = create_app(load_models(path), ApiKeysFile((ApiKey(name="ops", key=ADMIN, role="admin"),)),
                     gpu_probe=lambda: True)
    async with raw_client(app, ADMIN) as admin:
        report = (await admin.post("/v1/admin/speedtest", json={"model": "bert"})).json()
    assert report["type"] == "embedding"
    assert report["gpu"]["unit"] == report["cpu"]["unit"] == "inputs"
    assert report["gpu"]["work"] == report["cpu"]["work"] == 32
