"""The Chatterbox adapter against the real chatterbox classes, as far as a CPU allows.

Covered here: voices (built-in + reference recordings, by name only), the load path of the
real ``from_local`` (a missing file is a clear 503), and reference-voice conditioning with real
S3Gen / voice-encoder modules (random weights, tiny T3). Not covered: ``generate`` itself
(random-weight S3Gen needs 30-45 s per call on this CPU, and no real weights are reachable
offline) — to be run on a GPU machine with the real checkpoints.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from llmux.audio.encode import encode_audio
from llmux.engines.base import SpeakOptions
from llmux.engines.chatterbox_tts import ChatterboxTTS, reference_voices
from llmux.engines.factory import create_engine
from llmux.protocol.errors import InvalidRequest
from llmux.registry import load_models
from tests.support.audio import tone
from tests.support.http import demo_app, raw_client

pytestmark = pytest.mark.slow
aio = pytest.mark.asyncio(loop_scope="module")

CONFIG = """
budget_gb: 8
models_dir: {root}/models
voices_dir: {root}/voices
physical:
  chatterbox: {{type: tts, backend: chatterbox, weights: chatterbox, vram_gb: 2, options: {{variant: standard, device: cpu}}}}
  chatterbox-multilingual: {{type: tts, backend: chatterbox, weights: mtl, vram_gb: 2, options: {{variant: multilingual, device: cpu}}}}
virtual:
  Chatterbox: {{physical: chatterbox}}
  Chatterbox-Multilingual: {{physical: chatterbox-multilingual, behaviour: {{language: de}}}}
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chatterbox")
    (root / "models" / "chatterbox").mkdir(parents=True)
    (root / "models" / "chatterbox" / "conds.pt").write_bytes(b"")  # a built-in voice exists
    (root / "models" / "mtl").mkdir()
    voices = root / "voices"
    voices.mkdir()
    for name, fmt, hz in [("alice", "wav", 220), ("bob", "flac", 330)]:
        (voices / f"{name}.{fmt}").write_bytes(encode_audio(tone(1.0, 24_000, hz), 24_000, fmt))
    (voices / ".hidden.wav").write_bytes(b"x")
    (voices / "notes.txt").write_text("not a voice")
    (voices / "with space.wav").write_bytes(b"x")
    os.symlink("/etc/passwd", voices / "evil.wav")
    (root / "models.yaml").write_text(CONFIG.format(root=root))
    return root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(root: Path):  # type: ignore[no-untyped-def]
    return demo_app(load_models(root / "models.yaml"))


def test_reference_voices_are_plain_audio_files_by_name(root: Path) -> None:
    assert list(reference_voices(root / "voices")) == ["alice", "bob"]
    assert reference_voices(root / "missing") == {} and reference_voices(None) == {}


@aio
async def test_voice_lists_per_model_and_overall(app) -> None:  # type: ignore[no-untyped-def]
    async with raw_client(app, key=None) as http:
        standard = (await http.get("/v1/audio/voices", params={"model": "Chatterbox"})).json()["voices"]
        multilingual = (await http.get("/v1/audio/voices", params={"model": "Chatterbox-Multilingual"})).json()["voices"]
        overall = (await http.get("/v1/audio/voices")).json()["voices"]
    assert [v["id"] for v in standard] == ["default", "alice", "bob"]
    assert [v["id"] for v in multilingual] == ["alice", "bob"]  # no conds.pt: no built-in voice
    assert [v["id"] for v in overall] == ["default", "alice", "bob"]


@aio
async def test_unknown_voice_is_400_and_loads_nothing(app) -> None:  # type: ignore[no-untyped-def]
    async with raw_client(app) as http:
        for voice in ["evil", ".hidden", "notes", "../voices/alice"]:
            response = await http.post("/v1/audio/speech", json={"model": "Chatterbox", "input": "Hi.", "voice": voice})
            assert response.status_code == 400, voice
            assert response.json()["error"]["param"] == "voice"
        health = (await http.get("/health")).json()
    assert health["loaded"] == []


@aio
async def test_missing_weights_fail_the_real_load_with_a_clear_503(app) -> None:  # type: ignore[no-untyped-def]
    async with raw_client(app) as http:
        response = await http.post("/v1/audio/speech", json={"model": "Chatterbox", "input": "Hi.", "voice": "alice"})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_load_failed" and "ve.safetensors" in error["message"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real ``ChatterboxTTS`` object from real modules with random weights: T3 shrunk to a
    two-layer Llama without the perceiver resampler, a character-level text tokenizer, the real
    S3Gen and voice encoder."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts import ChatterboxTTS as Real
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["[START]", "[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials + list("abcdefghijklmnopqrstuvwxyz.,!?'"))}
    text = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    text.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    path = tmp_path_factory.mktemp("cb-tokenizer") / "tokenizer.json"
    text.save(str(path))
    LLAMA_CONFIGS.setdefault("llmux-test-tiny", {**LLAMA_CONFIGS["Llama_520M"], "hidden_size": 64,
                                                 "intermediate_size": 128, "num_hidden_layers": 2,
                                                 "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32})
    hp = T3Config.english_only()
    hp.llama_config_name = "llmux-test-tiny"
    hp.use_perceiver_resampler = False  # its width is fixed at the real model's 1024
    return Real(T3(hp).eval(), S3Gen().eval(), VoiceEncoder().eval(), EnTokenizer(str(path)), device="cpu")


def test_reference_voice_conditionals_are_prepared_once(root: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    registry = load_models(root / "models.yaml")
    adapter = create_engine(registry.physical["chatterbox"], registry)
    assert isinstance(adapter, ChatterboxTTS)
    tiny_model.conds = None
    adapter.attach(tiny_model)
    alice = adapter._conditionals("alice")
    assert alice is adapter._conditionals("alice")  # cached
    assert alice.t3.speaker_emb.shape == (1, 256) and alice.gen["prompt_feat"].shape[-1] == 80
    path = root / "voices" / "alice.wav"
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))
    again = adapter._conditionals("alice")  # re-recorded: prepared again
    assert again is not alice and np.allclose(again.gen["prompt_feat"].numpy(), alice.gen["prompt_feat"].numpy())
    with pytest.raises(InvalidRequest):
        adapter._conditionals("default")  # this model object has no built-in voice


def test_multilingual_language_is_checked_before_generating(root: Path) -> None:
    registry = load_models(root / "models.yaml")
    adapter = create_engine(registry.physical["chatterbox-multilingual"], registry)
    assert adapter._generate_kwargs(SpeakOptions(language="de"))["language_id"] == "de"
    with pytest.raises(InvalidRequest, match="not supported"):
        list(adapter.speak("Hallo.", "alice", SpeakOptions(language="xx"), threading.Event()))


@pytest.mark.slow  # random-weight Chatterbox generation: minutes on a 2-core CPU, but real
def test_speak_runs_real_generation_with_a_reference_voice(root: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    registry = load_models(root / "models.yaml")
    adapter = create_engine(registry.physical["chatterbox"], registry)
    adapter.attach(tiny_model)
    pieces = list(adapter.speak("hi.", "alice", SpeakOptions(speed=1.25), threading.Event()))
    assert len(pieces) == 1 and pieces[0].dtype == np.float32 and pieces[0].size > 0


def test_multilingual_languages_are_what_chatterbox_speaks() -> None:
    from chatterbox.mtl_tts import SUPPORTED_LANGUAGES

    from llmux.engines.chatterbox_tts import MULTILINGUAL_LANGUAGES

    assert sorted(MULTILINGUAL_LANGUAGES) == sorted(SUPPORTED_LANGUAGES)


@pytest.mark.parametrize(
    ("text", "language", "spoken"),
    [
        ("Guten Morgen! Wie geht es dir heute, und was machst du am Wochenende?", None, "de"),
        ("Good morning! How are you today, and what are you doing this weekend?", None, "en"),
        ("Guten Morgen! Wie geht es dir heute?", "en", "en"),  # a request's language always wins
    ],
)
def test_multilingual_speaks_the_language_of_the_text_unless_told(root: Path, text: str, language: str | None,
                                                                   spoken: str) -> None:
    import dataclasses

    import msgspec

    from llmux.protocol.audio import SpeechRequest
    from llmux.registry.config import Behaviour
    from llmux.residency.controller import ResidencyController
    from llmux.services.audio import AudioService

    registry = load_models(root / "models.yaml")
    auto = msgspec.structs.replace(registry.virtual["Chatterbox-Multilingual"], behaviour=Behaviour())  # no default
    registry = dataclasses.replace(registry, virtual={**registry.virtual, "Chatterbox-Multilingual": auto})
    service = AudioService(registry, ResidencyController(registry, create_engine))
    job = service.prepare_speech(SpeechRequest(model="Chatterbox-Multilingual", input=text, voice="alice",
                                               language=language))
    assert job.options.language == spoken

