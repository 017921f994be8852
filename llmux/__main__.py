"""The ``llmux`` command: serve, check, download."""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from llmux import download
from llmux.protocol.errors import ConfigError, LlmuxError
from llmux.registry import ApiKeysFile, Registry

if TYPE_CHECKING:
    from llmux.services.keys import KeyStore

DEFAULT_DATA_DIR = Path("/var/lib/llmux")


def _load(config_dir: Path) -> tuple[Registry, ApiKeysFile]:
    from llmux.registry import load_keys, load_models

    return load_models(config_dir / "models.yaml"), load_keys(config_dir / "api_keys.yaml")


def serve(args: argparse.Namespace) -> int:
    from llmux.app import create_app
    from llmux.logging import configure
    from llmux.registry.keys import unknown_models, weak_keys
    from llmux.server import run

    configure(args.log_level, json=args.log_json)
    registry, keys = _load(args.config)
    weak = weak_keys(keys)
    if weak and not args.allow_demo_keys:
        for line in weak:
            print(f"llmux: refusing to serve: {line}", file=sys.stderr)
        print(
            "llmux: generate real keys (python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
            "or pass --allow-demo-keys for a demo nobody else can reach",
            file=sys.stderr,
        )
        return 2
    for line in weak:
        print(f"llmux: warning: {line} (--allow-demo-keys)", file=sys.stderr)
    for line in unknown_models(keys, registry):
        print(f"llmux: refusing to serve: {line}", file=sys.stderr)
        return 2
    data_dir = args.data_dir or registry.data_dir or DEFAULT_DATA_DIR
    try:
        app = create_app(
            registry,
            keys,
            shutdown_grace_s=args.grace,
            data_dir=data_dir,
            keys_path=args.config / "api_keys.yaml",
            allow_weak_keys=args.allow_demo_keys,
        )
    except (OSError, sqlite3.Error) as exc:
        print(f"llmux: data directory {data_dir}: {exc} (set data_dir in models.yaml, or --data-dir)", file=sys.stderr)
        return 2
    services = app.state.services
    run(
        app,
        host=args.host,
        port=args.port,
        grace_s=args.grace,
        on_stop=services.controller.begin_shutdown,
        on_reload=lambda: _reload(services.keys),
    )
    return 0


def _reload(keys: KeyStore) -> None:
    """SIGHUP: a bad file is logged by the store and changes nothing."""
    with contextlib.suppress(ConfigError):
        keys.reload()


def check(args: argparse.Namespace) -> int:
    """Validate both files and report weights missing on disk; non-zero on any problem."""
    registry, keys = _load(args.config)
    problems = 0
    print(
        f"config {args.config}: {len(registry.physical)} physical, {len(registry.virtual)} virtual models, "
        f"{len(keys.keys)} API keys, VRAM budget {registry.budget_gb:g} GB"
    )
    for spec in registry.physical.values():
        if spec.remote:  # no weights here; its health is polled once llmux serves
            print(f"  {spec.id:<28} {spec.type.value:<4} {spec.backend:<14} {'remote':<8} {spec.options['base_url']}")
            env = spec.options.get("api_key_env")
            if env and not os.environ.get(env):
                print(f"  warning: {spec.id}: api_key_env {env} is not set here; `llmux serve` needs it")
            continue
        try:
            path: Path | str = registry.weights_path(spec)
        except LlmuxError as exc:  # pkg:// naming a package that is not installed
            path = exc.message
        status = "ok" if isinstance(path, Path) and path.exists() else "MISSING"
        if spec.vram_gb > registry.budget_gb:
            status += f" (estimate {spec.vram_gb:g} GB exceeds the budget: it will be refused)"
            problems += 1
        if status.startswith("MISSING"):
            problems += 1
        print(f"  {spec.id:<28} {spec.type.value:<4} {spec.backend:<14} {status:<8} {path}")
    from llmux.registry.keys import MIN_SERVE_LENGTH, unknown_models, weak_keys

    for line in weak_keys(keys, min_length=0):
        print(f"  {line}: generate a real one")
        problems += 1
    for line in unknown_models(keys, registry):
        print(f"  {line}")
        problems += 1
    for line in set(weak_keys(keys)) - set(weak_keys(keys, min_length=0)):
        print(f"  warning: {line}: `llmux serve` needs {MIN_SERVE_LENGTH} or more")
    if problems:
        print(f"{problems} problem(s)", file=sys.stderr)
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmux", description="Several AI models on one GPU behind one OpenAI-compatible API."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the API server")
    p.add_argument("--config", type=Path, required=True, help="directory with models.yaml and api_keys.yaml")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--log-json",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="JSON logs (default: when not a terminal)",
    )
    p.add_argument("--grace", type=float, default=30.0, help="seconds in-flight requests get on shutdown")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"where the usage database lives (default: data_dir in models.yaml, else {DEFAULT_DATA_DIR})",
    )
    p.add_argument(
        "--allow-demo-keys",
        action="store_true",
        help="serve even with placeholder, published or short API keys (demos on a private machine only)",
    )
    p.set_defaults(run=serve)
    c = sub.add_parser("check", help="validate the config and report missing weights")
    c.add_argument("--config", type=Path, required=True)
    c.set_defaults(run=check)
    download.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"llmux: config error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
