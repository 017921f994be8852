"""``llmux download`` against a local stand-in for the Hub, over real HTTP, with the real
huggingface_hub: what lands where, the token from ~/.cache/huggingface/token, skipping what is
complete, resuming what is partial, and a kernel cache the ``kernels`` package can read offline."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.fakehub import FakeHub, Repo

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_test_token_0123456789"
BIG = bytes(range(256)) * 4096  # 1 MiB: big enough to be cut off half-way

MODELS_YAML = """
budget_gb: 16
models_dir: /models
physical:
  gpt-oss-20b:
    type: llm
    backend: transformers
    family: gpt-oss
    weights: gpt-oss-20b
    vram_gb: 13
    hf_repo: openai/gpt-oss-20b
  qwen-gguf:
    type: llm
    backend: llamacpp
    family: qwen3.5
    weights: qwen-gguf/model-Q8_0.gguf
    vram_gb: 9
    hf_repo: someone/qwen-gguf
    hf_files: [model-Q8_0.gguf, mmproj-BF16.gguf]
    options: {mmproj: qwen-gguf/mmproj-BF16.gguf}
  cohere-transcribe:
    type: asr
    backend: transformers
    weights: cohere-transcribe
    vram_gb: 4
    hf_repo: CohereLabs/cohere-transcribe-03-2026
  local-only:
    type: tts
    backend: hibari
    weights: hibari
    vram_gb: 1
virtual:
  gpt-oss-20b-low: {physical: gpt-oss-20b, behaviour: {reasoning_effort: low}}
"""

KERNEL = "kernels-community/gpt-oss-triton-kernels"


@pytest.fixture
def hub() -> Iterator[tuple[FakeHub, str]]:
    fake = FakeHub()
    fake.add("model", "openai/gpt-oss-20b", Repo({
        "config.json": json.dumps({"quantization_config": {"quant_method": "mxfp4"}}).encode(),
        "model-00001-of-00001.safetensors": BIG,
        "tokenizer.json": b"{}",
    }))
    fake.add("model", "someone/qwen-gguf", Repo({
        "model-Q8_0.gguf": b"GGUF" + BIG[:1000],
        "mmproj-BF16.gguf": b"GGUF-mmproj",
        "model-Q4_K_M.gguf": b"GGUF-not-wanted",
        "README.md": b"not wanted either",
    }))
    fake.add("model", "CohereLabs/cohere-transcribe-03-2026", Repo(
        {"config.json": b"{}", "model.safetensors": b"asr"}, gated_token=TOKEN
    ))
    fake.add("kernel", KERNEL, Repo({
        "build/torch-universal/gpt_oss_triton_kernels/__init__.py": b"# kernel",
        "build/torch-universal/metadata.json": b"{}",
        "build/torch-universal/gpt_oss_triton_kernels/__pycache__/x.cpython-311.pyc": b"bytecode",
        "README.md": b"listed in the tree, so needed offline",
    }, branches=("main", "v1")))
    url, server = fake.start()
    yield fake, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A host: $HOME with the token file, a config dir, an empty models dir."""
    (tmp_path / "home/.cache/huggingface").mkdir(parents=True)
    (tmp_path / "home/.cache/huggingface/token").write_text(TOKEN + "\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config/models.yaml").write_text(textwrap.dedent(MODELS_YAML))
    (tmp_path / "models").mkdir()
    return tmp_path


def download(site: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(site / "home"),  # huggingface_hub finds ~/.cache/huggingface/token itself
        "HF_ENDPOINT": url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, "-m", "llmux.download", "--config", str(site / "config"),
           "--models-dir", str(site / "models"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_first_run_fetches_weights_files_and_kernels(site: Path, hub: tuple[FakeHub, str]) -> None:
    fake, url = hub
    result = download(site, url)
    assert result.returncode == 0, result.stderr + result.stdout
    models = site / "models"
    assert (models / "gpt-oss-20b/model-00001-of-00001.safetensors").read_bytes() == BIG
    # hf_files: only the two named files of a GGUF repository, next to each other
    assert sorted(p.name for p in (models / "qwen-gguf").iterdir() if not p.name.startswith(".")) == [
        "mmproj-BF16.gguf", "model-Q8_0.gguf"]
    assert (models / "cohere-transcribe/model.safetensors").read_bytes() == b"asr"
    # the gated repository got the token from $HOME/.cache/huggingface/token, unasked
    gated = [r for r in fake.requests if "cohere-transcribe" in r.path]
    assert gated and all(r.authorization == f"Bearer {TOKEN}" for r in gated)
    # the MXFP4 model's kernel, in the Hub cache layout under <models>/hf-cache, by version
    folder = models / "hf-cache" / ("kernels--" + KERNEL.replace("/", "--"))
    commit = (folder / "refs/v1").read_text().strip()
    assert (folder / "snapshots" / commit / "build/torch-universal/metadata.json").is_file()
    assert not list((folder / "snapshots" / commit).rglob("*.pyc"))
    assert "local-only" in result.stdout and "no-repo" in result.stdout
    assert "0 failed" in result.stdout


def test_second_run_skips_everything_without_touching_the_network(site: Path, hub: tuple[FakeHub, str]) -> None:
    fake, url = hub
    assert download(site, url).returncode == 0
    fake.requests.clear()
    again = download(site, url)
    assert again.returncode == 0, again.stderr
    assert fake.requests == []
    assert again.stdout.count("skipped") == 4  # three models and one kernel


def test_verify_rechecks_with_the_hub_but_downloads_nothing_new(site: Path, hub: tuple[FakeHub, str]) -> None:
    fake, url = hub
    assert download(site, url).returncode == 0
    fake.requests.clear()
    assert download(site, url, "--verify").returncode == 0
    assert fake.requests, "verify must ask the Hub"
    assert [r for r in fake.requests if r.method == "GET" and "/resolve/" in r.path] == []


def test_an_interrupted_download_fails_clearly_and_the_next_run_completes_it(site: Path, hub: tuple[FakeHub, str]) -> None:
    """huggingface_hub resumes byte-wise only within a run (its retries); across runs it keeps
    every finished file and fetches only the unfinished ones again (2.x drops partial files)."""
    fake, url = hub
    name = "model-00001-of-00001.safetensors"
    fake.cut_off[name] = 1000
    first = download(site, url, "--only", "gpt-oss-20b", "--no-kernels")
    assert first.returncode == 1
    assert "gpt-oss-20b" in first.stdout and "failed" in first.stdout and "1 failed" in first.stdout
    assert not (site / "models/gpt-oss-20b" / ".llmux-download.json").exists()
    assert (site / "models/gpt-oss-20b/config.json").is_file()
    fake.cut_off.clear()
    fake.requests.clear()
    second = download(site, url, "--only", "gpt-oss-20b", "--no-kernels")
    assert second.returncode == 0, second.stderr + second.stdout
    assert (site / "models/gpt-oss-20b" / name).read_bytes() == BIG
    fetched = [r.path.rsplit("/", 1)[1] for r in fake.requests if r.method == "GET" and "/resolve/" in r.path]
    assert fetched == [name]


def test_a_gated_model_without_a_token_says_what_to_do(site: Path, hub: tuple[FakeHub, str]) -> None:
    _, url = hub
    (site / "home/.cache/huggingface/token").unlink()
    result = download(site, url, "--only", "cohere-transcribe")
    assert result.returncode == 1
    assert "gated" in result.stdout and "~/.cache/huggingface/token" in result.stdout


def test_an_unknown_model_is_a_usage_error(site: Path, hub: tuple[FakeHub, str]) -> None:
    _, url = hub
    result = download(site, url, "--only", "no-such-model")
    assert result.returncode == 2
    assert "no-such-model" in result.stderr


def test_the_kernels_package_finds_the_prefetched_kernel_offline(site: Path, hub: tuple[FakeHub, str]) -> None:
    """The contract with ``kernels``: offline, it resolves ``version=1`` through refs/v1 in
    HF_HUB_CACHE and opens that snapshot with local_files_only and its ignore patterns
    (``resolve_hub_cache_kernel``); choosing a build variant needs torch and is not tested here."""
    importlib.import_module("kernels")  # a hard requirement of the suite: fail, never skip
    _, url = hub
    assert download(site, url).returncode == 0
    probe = textwrap.dedent(f"""
        from huggingface_hub import snapshot_download
        from kernels._versions import resolve_version_spec_as_ref
        from kernels.resolver import _BYTECODE_IGNORE_PATTERNS
        ref = resolve_version_spec_as_ref({KERNEL!r}, 1, local_files_only=True)
        path = snapshot_download({KERNEL!r}, repo_type="kernel", revision=ref.target_commit,
                                 ignore_patterns=_BYTECODE_IGNORE_PATTERNS, local_files_only=True)
        print(path)
    """)
    env = {"PATH": os.environ["PATH"], "HOME": str(site / "home"), "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(site / "models/hf-cache")}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip(), "build/torch-universal/metadata.json").is_file()


def test_reference_deployment_plan(reference, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What `llmux download` asks the Hub for, for config/models.yaml: every physical model into
    the directory its `weights` names (a GGUF's directory holds both of its files), then the
    kernels of the quantised transformers models (their config.json says which)."""
    from llmux.download import download_all

    quant = {"lovedheart/Qwen3.5-9B-FP8": "fp8", "openai/gpt-oss-20b": "mxfp4", "aoxo/gpt-oss-20b-uncensored": "mxfp4"}
    calls: list[tuple[str, dict]] = []

    def fetch(repo: str, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((repo, kwargs))
        if "local_dir" in kwargs and repo in quant:
            (kwargs["local_dir"] / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": quant[repo]}}))
        if kwargs.get("repo_type") == "kernel":
            folder = kwargs["cache_dir"] / ("kernels--" + repo.replace("/", "--"))
            (folder / "refs").mkdir(parents=True)
            (folder / "refs" / kwargs["revision"]).write_text("abc")
            (folder / "snapshots/abc/build").mkdir(parents=True)

    outcomes = download_all(reference, tmp_path, fetch=fetch)
    assert all(o.status == "downloaded" for o in outcomes), outcomes
    weights = {repo: (kw["local_dir"].relative_to(tmp_path).as_posix(), kw["allow_patterns"]) for repo, kw in calls if "local_dir" in kw}
    assert weights["HauhauCS/Qwen3.5-9B-Uncensored-HauhauCS-Aggressive"] == ("Qwen3.5-9B-Uncensored", [
        "Qwen3.5-9B-Uncensored-HauhauCS-Aggressive-Q8_0.gguf", "mmproj-Qwen3.5-9B-Uncensored-HauhauCS-Aggressive-BF16.gguf"])
    assert weights["CohereLabs/cohere-transcribe-03-2026"] == ("cohere-transcribe-03-2026", None)
    assert weights["openai/gpt-oss-20b"] == ("gpt-oss-20b", None)
    assert len([c for c in calls if "local_dir" in c[1]]) == len(reference.physical) == 9
    kernels = [(repo, kw["revision"], kw["cache_dir"]) for repo, kw in calls if kw.get("repo_type") == "kernel"]
    assert kernels == [
        ("kernels-community/finegrained-fp8", "v4", tmp_path / "hf-cache"),
        ("kernels-community/gpt-oss-triton-kernels", "v1", tmp_path / "hf-cache"),
    ]
    calls.clear()
    assert all(o.status == "skipped" for o in download_all(reference, tmp_path, fetch=fetch))
    assert calls == []
