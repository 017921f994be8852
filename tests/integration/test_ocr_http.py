"""OCR as litellm-local serves it: a virtual model that is a vision LLM plus a fixed instruction
(``behaviour.system_prompt``), through HTTP with the openai client and a tiny random Qwen3.5
vision model on transformers; the instruction and the image reach the rendered prompt."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import structlog
import yaml

from llmux.app import create_app
from llmux.protocol.errors import ConfigError
from llmux.registry import ApiKey, ApiKeysFile, load_models
from tests.fixtures.chat_backends import tiny_dir  # noqa: F401
from tests.fixtures.tiny_models import build_qwen35
from tests.support.server import serve

pytestmark = pytest.mark.slow
import transformers  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip

KEY = "sk-test-ocr-0123456789abcdef"
INSTRUCTION = "You are an OCR engine. Transcribe all text in the image exactly."


@pytest.fixture(scope="module")
def client(tiny_dir: Path) -> Iterator[openai.OpenAI]:  # noqa: F811
    config = {
        "budget_gb": 8, "models_dir": str(tiny_dir),
        "physical": {"vl": {"type": "llm", "backend": "transformers", "family": "qwen3.5", "vision": True,
                            "vram_gb": 0.1, "weights": str(build_qwen35(tiny_dir / "ocr-qwen")),
                            "options": {"device": "cpu", "threads": 1}}},
        "virtual": {
            "chat": {"physical": "vl", "behaviour": {"thinking": False}},
            "ocr": {"physical": "vl", "behaviour": {"thinking": False, "system_prompt": INSTRUCTION,
                                                    "sampling": {"temperature": 0.0}}},
        },
    }
    path = tiny_dir / "ocr-models.yaml"
    path.write_text(yaml.safe_dump(config))
    app = create_app(load_models(path), ApiKeysFile(keys=(ApiKey(name="t", key=KEY),)))
    with serve(app) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


def png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (250, 250, 250)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def rendered(client: openai.OpenAI, model: str, messages: list[dict[str, object]]) -> str:
    with structlog.testing.capture_logs() as logs:
        reply = client.chat.completions.create(model=model, max_tokens=3, messages=messages)  # type: ignore[arg-type]
    assert reply.choices[0].finish_reason in ("stop", "length")
    (prompt,) = [e["prompt"] for e in logs if e["event"] == "chat.rendered"]
    return str(prompt)


IMAGE_ONLY = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png()}}]}]


def test_the_instruction_opens_the_prompt_and_the_image_follows(client: openai.OpenAI) -> None:
    prompt = rendered(client, "ocr", IMAGE_ONLY)
    assert prompt.startswith(f"<|im_start|>system\n{INSTRUCTION}<|im_end|>\n<|im_start|>user\n")
    assert prompt.index(INSTRUCTION) < prompt.index("<|vision_start|>") < prompt.index("<|im_start|>assistant")


def test_a_clients_system_message_follows_the_instruction(client: openai.OpenAI) -> None:
    prompt = rendered(client, "ocr", [{"role": "system", "content": "Only the title."}, *IMAGE_ONLY])
    assert f"<|im_start|>system\n{INSTRUCTION}\n\nOnly the title.<|im_end|>" in prompt
    assert prompt.count("<|im_start|>system") == 1


def test_the_same_model_without_the_instruction_has_none(client: openai.OpenAI) -> None:
    assert INSTRUCTION not in rendered(client, "chat", IMAGE_ONLY)


def test_a_system_prompt_on_a_speech_model_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text(
        "physical:\n  p: {type: tts, backend: hibari, weights: w, vram_gb: 1}\n"
        "virtual:\n  m: {physical: p, behaviour: {system_prompt: hi}}\n"
    )
    with pytest.raises(ConfigError, match=r"\$.virtual.m.behaviour.system_prompt: only llm models"):
        load_models(tmp_path / "models.yaml")
