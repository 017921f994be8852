"""The transformers ASR backend on a tiny random ``cohere_asr`` checkpoint, through HTTP.

Random weights transcribe gibberish: these tests check that the real transformers classes run
end to end from an upload (English and German, short and long audio), and that the language
reaches the decoder prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openai
import pytest
import pytest_asyncio

from llmux.audio.encode import encode_audio
from llmux.registry import load_models
from tests.support import tiny_cohere
from tests.support.http import demo_app, openai_client

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CONFIG = """
budget_gb: 4
models_dir: {models}
physical:
  cohere-tiny:
    type: asr
    backend: transformers
    weights: cohere-tiny
    vram_gb: 0.1
    options: {{device: cuda, dtype: float32}}
virtual:
  cohere-transcribe: {{physical: cohere-tiny, behaviour: {{language: en}}}}
  cohere-transcribe-de: {{physical: cohere-tiny, behaviour: {{language: de}}}}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(tmp_path_factory):  # type: ignore[no-untyped-def]
    root: Path = tmp_path_factory.mktemp("cohere")
    tiny_cohere.build(root / "cohere-tiny")
    (root / "models.yaml").write_text(CONFIG.format(models=root))
    return demo_app(load_models(root / "models.yaml"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prompts(app):  # type: ignore[no-untyped-def]
    """Decoder prompts the model really received, captured by a forward hook."""
    seen: list[list[int]] = []
    async with app.state.services.controller.lease("cohere-tiny") as lease:
        decoder = lease.engine._model.model.decoder

        def record(module, args, kwargs):  # type: ignore[no-untyped-def]
            ids = kwargs.get("input_ids")
            if ids is not None and ids.shape[1] > 1:  # the prompt, not a cached single step
                seen.append(ids[0].tolist())

        decoder.register_forward_pre_hook(record, with_kwargs=True)
    return seen


def _speechlike(seconds: float) -> bytes:
    rng = np.random.default_rng(0)
    return encode_audio((0.1 * rng.standard_normal(int(seconds * 24_000))).astype(np.float32), 24_000, "flac")


async def test_english_and_german_run_end_to_end_with_their_own_prompt(app, prompts) -> None:  # type: ignore[no-untyped-def]
    client = openai_client(app)
    clip = _speechlike(3.0)
    english = await client.audio.transcriptions.create(model="cohere-transcribe", file=("a.flac", clip))
    german = await client.audio.transcriptions.create(model="cohere-transcribe", file=("a.flac", clip), language="de")
    default_de = await client.audio.transcriptions.create(model="cohere-transcribe-de", file=("a.flac", clip))
    assert isinstance(english.text, str) and isinstance(german.text, str)
    assert len(prompts) == 3
    en, de, de_default = prompts
    assert en != de and de == de_default
    assert default_de.text == german.text


async def test_long_audio_is_chunked_and_stitched(app, prompts) -> None:  # type: ignore[no-untyped-def]
    before = len(prompts)
    verbose = await openai_client(app).audio.transcriptions.create(
        model="cohere-transcribe", file=("long.flac", _speechlike(50.0)), response_format="verbose_json"
    )
    assert abs(verbose.duration - 50.0) < 0.1 and verbose.language == "english"
    assert len(prompts) - before == 1  # one batched generate over the two chunks


async def test_unsupported_language_is_400(app) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.BadRequestError, match="not supported"):
        await openai_client(app).audio.transcriptions.create(model="cohere-transcribe", file=("a.flac", _speechlike(1.0)), language="sv")
