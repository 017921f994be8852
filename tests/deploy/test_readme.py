"""deploy/README.md stays true: its OpenCode example lists exactly the chat models the reference
config serves, its Open WebUI settings name models that exist with the right type, every shell
block parses, and every file it tells the operator to use exists."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from llmux.registry import ModelType, Registry

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "deploy/README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def models_of(reference: Registry, kind: ModelType) -> list[str]:
    """The requirements' models of a kind (not the OCR model: a vision LLM with an instruction)."""
    return [name for name, v in reference.virtual.items()
            if reference.physical[v.physical].type is kind and v.behaviour.system_prompt is None]


def test_opencode_example_lists_every_chat_model(reference: Registry) -> None:
    (example,) = blocks("json")
    config = json.loads(example)
    provider = config["provider"]["llmux"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"]["baseURL"].endswith("/v1")
    assert list(provider["models"]) == models_of(reference, ModelType.LLM)
    assert config["model"].removeprefix("llmux/") in provider["models"]


def test_open_webui_settings_name_served_models(reference: Registry) -> None:
    stt = re.search(r"STT Model \| `([^`]+)`", README)[1]
    tts = re.search(r"TTS Model \| `([^`]+)`", README)[1]
    assert stt == "cohere-transcribe" and stt in models_of(reference, ModelType.ASR)
    assert tts == "Chatterbox-Multilingual" and tts in models_of(reference, ModelType.TTS)
    assert "`http://127.0.0.1:8081/v1`" in README
    assert len(reference.virtual) == 16 + 1 and "all 16 virtual models" in README  # + the OCR model


def test_shell_blocks_parse() -> None:
    for block in blocks("sh"):
        result = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert result.returncode == 0, f"{result.stderr}\n{block}"


def test_yaml_blocks_parse() -> None:
    for block in blocks("yaml"):
        assert yaml.safe_load(block)


def test_files_the_readme_names_exist() -> None:
    named = set(re.findall(r"(?:src/llmux/)?(deploy/[\w./-]+\.(?:sh|pod|container|yml))", README))
    assert {"deploy/create_pod_llmux.sh", "deploy/download_models.sh", "deploy/traefik/llmux.yml",
            "deploy/quadlet/llmux.pod", "deploy/quadlet/llmux.container"} <= named
    for path in named:
        assert (ROOT / path).is_file(), path
    assert (ROOT / "Containerfile").is_file()
