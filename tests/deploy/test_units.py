"""The Quadlet files and the Traefik route: they say what the pod script does, Quadlet can
generate units from them (where Podman's quadlet generator is installed) and those units pass
``systemd-analyze verify``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
QUADLET = DEPLOY / "quadlet"

# Keys of podman-systemd.unit(5) (Podman 5.x) that these files may use; a typo is not silently ignored.
KNOWN = {
    "Unit": {"Description", "After", "Wants", "Requires"},
    "Pod": {"PodName", "ServiceName", "PublishPort", "UserNS", "Network", "PodmanArgs"},
    "Container": {"ContainerName", "Pod", "Image", "AddDevice", "SecurityLabelDisable", "Volume",
                  "StopTimeout", "Environment", "HealthCmd", "Exec", "PodmanArgs"},
    "Service": {"Restart", "TimeoutStopSec", "TimeoutStartSec", "ExecReload"},
    "Install": {"WantedBy"},
}


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """systemd's syntax: sections, repeatable keys, ``#`` comments (configparser merges keys)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, sep, value = line.partition("=")
        assert sep and current, f"{path.name}: not a key=value line inside a section: {raw!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def script_default(name: str) -> str:
    text = (DEPLOY / "create_pod_llmux.sh").read_text()
    match = re.search(rf'^{name}="\$\{{LLMUX_\w+:-([^}}]*)\}}"', text, re.M)
    assert match, name
    return match.group(1)


@pytest.mark.parametrize("name", ["llmux.pod", "llmux.container"])
def test_quadlet_files_use_only_known_keys(name: str) -> None:
    unit = parse_unit(QUADLET / name)
    for section, pairs in unit.items():
        assert section in KNOWN, f"{name}: unknown section [{section}]"
        unknown = {k for k, _ in pairs} - KNOWN[section]
        assert not unknown, f"{name} [{section}]: unknown keys {unknown}"


def test_quadlet_matches_the_pod_script() -> None:
    pod = parse_unit(QUADLET / "llmux.pod")
    ctr = parse_unit(QUADLET / "llmux.container")
    assert values(pod, "Pod", "PodName") == [script_default("POD_NAME")]
    assert values(pod, "Pod", "ServiceName") == [f"pod-{script_default('POD_NAME')}"]
    assert values(pod, "Pod", "PublishPort") == [f"{script_default('BIND_ADDR')}:{script_default('HOST_PORT')}:8081"]
    uid = script_default("CTR_UID")
    assert values(pod, "Pod", "UserNS") == [f"keep-id:uid={uid},gid={uid}"]
    assert values(ctr, "Container", "ContainerName") == [script_default("CTR_NAME")]
    assert values(ctr, "Container", "Pod") == ["llmux.pod"]
    assert values(ctr, "Container", "Image") == [script_default("IMAGE")]
    assert values(ctr, "Container", "AddDevice") == [script_default("GPU_DEVICE")]
    assert values(ctr, "Container", "StopTimeout") == [script_default("STOP_TIMEOUT")]
    assert values(ctr, "Container", "Volume") == [
        "%h/.local/share/llmux_pod/models:/models:ro",
        "%h/.local/share/llmux_pod/config:/config:ro",
        "%h/.local/share/llmux_pod/data:/var/lib/llmux",
    ]
    assert values(ctr, "Service", "ExecReload") == [f"/usr/bin/podman kill --signal HUP {script_default('CTR_NAME')}"]
    # the image's user must be the one the pod maps the host user to
    assert f"ARG LLMUX_UID={uid}" in (ROOT / "Containerfile").read_text()


def test_systemd_stops_later_than_llmux_drains() -> None:
    ctr = parse_unit(QUADLET / "llmux.container")
    assert int(values(ctr, "Service", "TimeoutStopSec")[0]) > int(values(ctr, "Container", "StopTimeout")[0])


QUADLET_BIN = os.environ.get("QUADLET") or next(
    (p for p in ("/usr/libexec/podman/quadlet", "/usr/lib/podman/quadlet") if Path(p).exists()), None
)


@pytest.mark.skipif(QUADLET_BIN is None, reason="Podman's quadlet generator is not installed (Podman >= 5.3, or QUADLET=path)")
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_quadlet_generates_units_that_systemd_accepts(tmp_path: Path) -> None:
    source, out, runtime = tmp_path / "src", tmp_path / "out", tmp_path / "run"
    shutil.copytree(QUADLET, source)
    out.mkdir()
    runtime.mkdir(mode=0o700)
    gen = subprocess.run([QUADLET_BIN, "-user", str(out)], env={"QUADLET_UNIT_DIRS": str(source)},
                         capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    units = {u.name: u for u in out.glob("*.service")}
    assert set(units) == {"pod-llmux_pod.service", "llmux.service"}
    pod, ctr = units["pod-llmux_pod.service"].read_text(), units["llmux.service"].read_text()
    assert "--publish 127.0.0.1:8081:8081" in pod and "--userns keep-id:uid=10001,gid=10001" in pod
    assert "--name llmux_pod" in pod and "WantedBy=default.target" in pod
    assert "--name llmux_ctr" in ctr and "--device nvidia.com/gpu=all" in ctr and "--stop-timeout 60" in ctr
    assert "BindsTo=pod-llmux_pod.service" in ctr  # stopped before the pod, with its own 60 s
    # systemd-analyze also checks that ExecStart's program exists; podman need not be installed here.
    for unit in units.values():
        unit.write_text(unit.read_text().replace("/usr/bin/podman", shutil.which("true") or "/bin/true"))
    verify = subprocess.run(["systemd-analyze", "verify", "--user", *map(str, units.values())],
                            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_traefik_route() -> None:
    route = yaml.safe_load((DEPLOY / "traefik/llmux.yml").read_text())
    router = route["http"]["routers"]["llmux"]
    assert router["rule"] == "Host(`kidirekt.kischdle.com`)"
    assert router["entryPoints"] == ["wireguard"]
    service = route["http"]["services"][router["service"]]
    assert service["loadBalancer"]["servers"] == [{"url": "http://10.0.2.2:8081"}]
    assert "middlewares" not in router  # LLMUX-AUTH-003: Traefik routes, llmux authenticates


def test_containerfile_agrees_with_the_rest() -> None:
    """The image's pins and paths are the ones the package, the pod and the downloads assume."""
    from llmux.download import KERNEL_CACHE

    text = (ROOT / "Containerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    llama = re.search(r"ARG LLAMA_CPP_PYTHON_VERSION=(\S+)", text)[1]
    assert f'"llama-cpp-python=={llama}"' in pyproject
    chatterbox = re.search(r"ARG CHATTERBOX_VERSION=(\S+)", text)[1]
    assert f"chatterbox-tts=={chatterbox}" in (DEPLOY / "requirements-nodeps.txt").read_text()
    assert "FROM docker.io/pytorch/pytorch:${PYTORCH_TAG}-runtime" in text
    assert "ARG PYTORCH_TAG=2.11.0-cuda12.8-cudnn9" in text  # LLMUX-ARCH-003
    assert re.search(r"-DCMAKE_CUDA_ARCHITECTURES=\$\{CUDA_ARCHITECTURES\}", text)
    assert "120" in re.search(r'ARG CUDA_ARCHITECTURES="([^"]+)"', text)[1].split(";")  # RTX 50xx
    assert f"HF_HUB_CACHE=/models/{KERNEL_CACHE}" in text and "HF_HUB_OFFLINE=1" in text
    assert "EXPOSE 8081" in text and "http://127.0.0.1:8081/health" in text
    assert re.search(r"^USER \$\{LLMUX_UID\}", text, re.M)
    assert 'VOLUME ["/models", "/config"]' in text
    assert 'CMD ["serve", "--config", "/config", "--host", "0.0.0.0", "--port", "8081"]' in text
