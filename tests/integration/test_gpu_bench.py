"""``bench.gpu`` keeps working between GPU runs: ``--tiny`` is the same code with small
configurations, run here on the CPU through llmux's residency controller and engines, and the
checkpoints it writes shard by shard are ones transformers loads without a missing key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LLMS = ["qwen3.5-9b-fp8", "gpt-oss-20b", "qwen3.5-9b-fp8-uncensored", "qwen3.5-4b"]


@pytest.mark.slow
def test_tiny_run_prints_every_row_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "table.txt"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu", "--tiny", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = out.read_text()
    assert table.splitlines()[0].startswith("bench.gpu --tiny: no GPU")
    rows = {(line.split()[0], " ".join(line.split()[1:3])) for line in table.splitlines()[3:]}
    for model in [*LLMS, "cohere-transcribe"]:
        for measure in ("build", "load vs", "swap-in cold", "footprint not", "GPU vs", "numeric path"):
            assert any(r[0] == model and r[1].startswith(measure) for r in rows), (model, measure, table)
    for model in LLMS:
        for clients in ("1 client", "4 clients", "8 clients"):
            assert any(r[0] == model and r[1].startswith(clients) for r in rows), (model, clients, table)
    assert "FAILED" not in table, table
    path = {line.split()[0]: line for line in table.splitlines() if " numeric path " in line}
    assert "DEQUANTISED fp8" in path["qwen3.5-9b-fp8"] and "DEQUANTISED mxfp4" in path["gpt-oss-20b"]
    assert "no quantisation" in path["qwen3.5-4b"]
    assert "GGUF Q8_0 via llama.cpp" in path["qwen3.5-9b-fp8-uncensored"]
    assert "warm tier: pending" in table and "chatterbox" in table
    assert "temp dir removed" in table and " environment " in table
    assert not list(tmp_path.glob("llmux-gpu-bench-*")), "the bench left its checkpoints behind"


def test_qwen35_gguf_runs_in_llama_cpp(tmp_path: Path) -> None:
    import llama_cpp

    from bench import gpu_gguf
    from bench import gpu_models as g

    path = gpu_gguf.build_qwen35_gguf(tmp_path / "q.gguf", g.TINY_QWEN["text"], context=1024) and tmp_path / "q.gguf"
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_gpu_layers=0, n_threads=1, verbose=False)
    try:
        assert llm.metadata["general.architecture"] == "qwen35"
        prompt = llm.tokenize(b"<|im_start|>user\nhello<|im_end|>\n", add_bos=False, special=True)
        generated = [t for _, t in zip(range(4), llm.generate(prompt, temp=0), strict=False)]
        assert len(generated) == 4
    finally:
        llm.close()


@pytest.mark.parametrize("arch", ["qwen35-fp8", "qwen35", "gpt-oss-mxfp4", "cohere-asr"])
def test_directly_written_shards_load_without_missing_keys(tmp_path: Path, arch: str) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoModelForSpeechSeq2Seq

    from bench import gpu_models as g

    build, auto = {
        "qwen35-fp8": (lambda d: g.build_qwen35(d, g.TINY_QWEN, fp8=True), AutoModelForImageTextToText),
        "qwen35": (lambda d: g.build_qwen35(d, g.TINY_QWEN, fp8=False), AutoModelForImageTextToText),
        "gpt-oss-mxfp4": (lambda d: g.build_gpt_oss(d, g.TINY_GPT_OSS), AutoModelForCausalLM),
        "cohere-asr": (lambda d: g.build_cohere_asr(d, g.TINY_COHERE), AutoModelForSpeechSeq2Seq),
    }[arch]
    built = build(tmp_path / arch)
    _, info = auto.from_pretrained(built.directory, output_loading_info=True)
    assert not any(info.values()), info


def test_shards_split_and_index_like_save_pretrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import safe_open

    from bench import gpu_models as g

    monkeypatch.setattr(g, "SHARD_BYTES", 3000)  # one 2 KB matrix per shard
    tensors = [g.Tensor(f"w{i}", "BF16", (32, 32)) for i in range(3)] + [g.Tensor("n.norm.weight", "F32", (8,), "ones")]
    total = g.write_safetensors(tmp_path, tensors)
    assert total == sum(t.nbytes for t in tensors)
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)
    ]
    with safe_open(tmp_path / "model-00003-of-00003.safetensors", "pt") as f:
        norm = f.get_tensor("n.norm.weight")
    assert norm.tolist() == [1.0] * 8
    index = (tmp_path / "model.safetensors.index.json").read_text()
    assert '"n.norm.weight": "model-00003-of-00003.safetensors"' in index
