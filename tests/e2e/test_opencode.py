"""The real OpenCode CLI (npm ``opencode-ai``, installed by ``make clients``) against a real llmux
server: ``opencode run`` non-interactively, through its ``@ai-sdk/openai-compatible`` provider.

1. A tool round trip, deterministic: a scripted GGUF (hand-set weights, real llama.cpp) answers
   the first turn with a Hermes-style call to OpenCode's ``read`` tool and, once the file's
   content comes back, with a sentence. OpenCode executes the tool in between.
2. A plain conversation on the demo config (SmolLM2 on the CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_keys, load_models
from tests.fixtures.tiny_models import HERMES_ANSWER_SCRIPT, build_scripted_gguf
from tests.support.server import serve

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
OPENCODE = ROOT / "clients" / "node_modules" / ".bin" / "opencode"
KEY = "sk-test-opencode-0123456789"


@pytest.fixture(scope="module")
def opencode() -> Path:
    # A hard requirement of the suite: fail, never skip.
    assert OPENCODE.exists(), f"{OPENCODE} is missing: run `make clients` (npm install --prefix clients)"
    return OPENCODE


def config(base_url: str, key: str, model: str, context: int, tools: dict[str, bool]) -> dict[str, Any]:
    """The README's opencode.json, plus an agent with a short prompt and only the tools a check
    needs (OpenCode's default prompt is ~7.6k tokens: minutes of prefill on a shared CPU)."""
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {"llmux": {
            "npm": "@ai-sdk/openai-compatible", "name": "llmux",
            "options": {"baseURL": f"{base_url}/v1", "apiKey": key},
            "models": {model: {"name": model, "tool_call": True, "limit": {"context": context, "output": 256}}},
        }},
        "model": f"llmux/{model}",
        "agent": {"check": {"mode": "primary", "prompt": "You are a helpful assistant. Answer briefly.",
                            "tools": {"*": False, **tools}}},
    }


def run_opencode(binary: Path, workdir: Path, settings: dict[str, Any], message: str) -> list[dict[str, Any]]:
    """``opencode run --format json`` in ``workdir``, isolated from the user's own config and
    from the network (no models.dev fetch, no update check, no plugins)."""
    (workdir / "opencode.json").write_text(json.dumps(settings))
    home = workdir.parent / f"{workdir.name}-home"
    env = {**os.environ, "PWD": str(workdir), "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_STATE_HOME": str(home / ".local/state"), "OPENCODE_DISABLE_MODELS_FETCH": "1",
           "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
           "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "OPENCODE_DISABLE_SHARE": "1", "OPENCODE_DISABLE_CLAUDE_CODE": "1"}
    done = subprocess.run([str(binary), "run", "--agent", "check", "--title", "llmux check", "--format", "json", "--print-logs", message],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-6000:])
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert not [e for e in events if e.get("type") == "error"], done.stdout[-3000:]
    return events


@pytest.fixture
def scripted_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path / "project"
    workdir.mkdir()
    notes = workdir / "notes.txt"
    notes.write_text("llamas are great\n")
    call = ["I will read it.", "\n<tool_call>", '\n{"name": "read", "arguments": ', json.dumps({"filePath": str(notes)}) + "}",
            "\n</tool_call>"]
    weights = build_scripted_gguf(tmp_path / "agent.gguf", call, template="chatml_scripted.jinja",
                                  turns=(("\t", HERMES_ANSWER_SCRIPT),))
    models = {"budget_gb": 4, "models_dir": str(tmp_path),
              "physical": {"agent": {"type": "llm", "backend": "llamacpp", "family": "chatml", "tools": True,
                                     "vram_gb": 0.1, "weights": str(weights),
                                     "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 8192}}},
              "virtual": {"toolbot": {"physical": "agent"}}}
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(models))
    app = create_app(load_models(tmp_path / "models.yaml"), ApiKeysFile((ApiKey("opencode", KEY),)))
    with serve(app) as url:
        yield url, workdir


def test_opencode_completes_a_tool_round_trip(opencode: Path, scripted_server: tuple[str, Path]) -> None:
    url, workdir = scripted_server
    events = run_opencode(opencode, workdir, config(url, KEY, "toolbot", 8192, {"read": True}),
                          "What does notes.txt say?")
    tools = [e["part"] for e in events if e.get("type") == "tool_use"]
    assert [t["tool"] for t in tools] == ["read"]
    assert tools[0]["state"]["status"] == "completed" and "llamas are great" in tools[0]["state"]["output"]
    texts = [e["part"]["text"] for e in events if e.get("type") == "text"]
    assert texts[-1] == "The file says: llamas are great."
    finishes = [e["part"]["reason"] for e in events if e.get("type") == "step_finish"]
    assert finishes == ["tool-calls", "stop"]


def test_opencode_plain_conversation_on_the_demo(opencode: Path, tmp_path: Path) -> None:
    demo = ROOT / "config" / "demo"
    key = load_keys(demo / "api_keys.yaml").keys[0].key
    workdir = tmp_path / "project"
    workdir.mkdir()
    with serve(create_app(load_models(demo / "models.yaml"), load_keys(demo / "api_keys.yaml"))) as url:
        events = run_opencode(opencode, workdir, config(url, key, "smollm2", 8192, {}), "Say hello.")
    texts = [e["part"]["text"] for e in events if e.get("type") == "text"]
    assert texts and texts[-1].strip()
    assert [e["part"]["reason"] for e in events if e.get("type") == "step_finish"][-1] in ("stop", "length")
