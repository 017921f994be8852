"""The real Codex CLI (npm ``@openai/codex``, pinned in clients/package.json, installed by ``make clients``) completes a task with
a tool call against llmux, through ``/v1/responses``.

The model is a scripted GGUF run by llama.cpp for real: its hand-set weights make it call
``exec_command`` to write a file on the first turn, and answer once the tool's result is in
the prompt (the fixture template ends that prompt differently). Codex runs the command itself,
sends the output back as a ``function_call_output`` item, and prints the final answer — the
whole tool loop, deterministically, on a CPU. Codex's own prompt is ~30k tokens: the test
takes about a minute on two cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_models
from tests.fixtures.tiny_models import build_scripted_gguf
from tests.support.server import serve

pytestmark = pytest.mark.slow
import llama_cpp  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-codex-0123456789abcdef"
CALL = ["<tool_call>\n<function=exec_command>\n<parameter=cmd>\n", "echo llmux-codex-ok > proof.txt",
        "\n</parameter>\n</function>\n</tool_call>"]
ANSWER = ["Done: ", "proof.txt is written."]


def codex_binary() -> str:
    """``make clients`` installs it under clients/; ``LLMUX_CODEX`` or PATH may name another."""
    for candidate in (os.environ.get("LLMUX_CODEX"), str(ROOT / "clients/node_modules/.bin/codex"), shutil.which("codex")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("the Codex CLI is missing: run `make clients` (npm install --prefix clients)")


@pytest.fixture(scope="module")
def llmux_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    models = tmp_path_factory.mktemp("codex-models")
    weights = build_scripted_gguf(models / "codex-agent.gguf", CALL, template="qwen35-turns.jinja",
                                  turns=(("\t", ANSWER),), context=65536)
    config = {"budget_gb": 8, "models_dir": str(models),
              "physical": {"codex-agent": {"type": "llm", "backend": "llamacpp", "family": "qwen3.5", "tools": True,
                                           "vram_gb": 0.1, "weights": str(weights),
                                           "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 65536}}},
              "virtual": {"agent": {"physical": "codex-agent", "behaviour": {"thinking": False}}}}
    (models / "models.yaml").write_text(yaml.safe_dump(config))
    app = create_app(load_models(models / "models.yaml"), ApiKeysFile(keys=(ApiKey(name="codex", key=KEY),)))
    with serve(app) as url:
        yield url


def write_config(home: Path, url: str) -> None:
    """The README's Codex settings ("Clients"), pointed at the test server."""
    home.mkdir()
    (home / "config.toml").write_text(f"""\
model = "agent"
model_provider = "llmux"

[model_providers.llmux]
name = "llmux"
base_url = "{url}/v1"
env_key = "LLMUX_API_KEY"
wire_api = "responses"
""")


def test_codex_exec_runs_a_tool_loop(llmux_url: str, tmp_path: Path) -> None:
    codex = codex_binary()
    write_config(tmp_path / "codex-home", llmux_url)
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CODEX_HOME": str(tmp_path / "codex-home"),
           "LLMUX_API_KEY": KEY}
    done = subprocess.run(
        [codex, "exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
         "--disable", "goals", "--disable", "multi_agent", "Write the proof file."],
        cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    events: list[dict[str, Any]] = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    commands = [i for i in items if i["type"] == "command_execution"]
    assert len(commands) == 1 and "echo llmux-codex-ok > proof.txt" in commands[0]["command"]
    assert commands[0]["exit_code"] == 0
    assert (work / "proof.txt").read_text() == "llmux-codex-ok\n"
    assert [i["text"] for i in items if i["type"] == "agent_message"] == ["Done: proof.txt is written."]
    assert events[-1]["type"] == "turn.completed"
