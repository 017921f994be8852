from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from llmux.__main__ import main
from llmux.protocol.errors import ConfigError
from llmux.registry import ModelType, Registry, load_keys, load_models
from tests.conftest import CONFIG


def test_reference_deployment_has_the_required_models(reference: Registry) -> None:
    assert len(reference.physical) == 9
    # The requirements' 16 virtual models; the OCR model (issue 13) is an instruction on top of them.
    required = {name: v for name, v in reference.virtual.items() if v.behaviour.system_prompt is None}
    assert set(reference.virtual) - set(required) == {"Qwen3.5-4B-OCR"}
    assert len(required) == 16
    assert reference.budget_gb == 16
    kinds = Counter(reference.physical[v.physical].type for v in required.values())
    assert kinds == {ModelType.LLM: 12, ModelType.ASR: 1, ModelType.TTS: 3}
    thinking = Counter(v.behaviour.thinking for v in required.values() if v.behaviour.thinking is not None)
    assert thinking == {True: 3, False: 3}
    efforts = Counter(v.behaviour.reasoning_effort for v in reference.virtual.values() if v.behaviour.reasoning_effort)
    assert efforts == {"low": 2, "medium": 2, "high": 2}
    assert {"cohere-transcribe", "Chatterbox", "Chatterbox-Turbo", "Chatterbox-Multilingual"} <= set(reference.virtual)
    uncensored = reference.physical["qwen3.5-9b-fp8-uncensored"]
    assert uncensored.backend == "llamacpp" and uncensored.options["mmproj"].endswith(".gguf")


def test_example_keys_are_placeholders_with_several_clients() -> None:
    keys = load_keys(CONFIG / "api_keys.yaml")
    assert len(keys.keys) >= 3
    assert all(k.key.startswith("CHANGE-ME") for k in keys.keys)
    assert any(k.role == "admin" for k in keys.keys)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


LLM = "{type: llm, backend: transformers, weights: w, vram_gb: 4}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'physical:\n  qwen3.5-4b: {type: llm, backend: transformers, weights: w, vram_gb: "four"}\n',
            '$.physical.qwen3.5-4b.vram_gb: expected a number, got "four"',
        ),
        ("physical:\n  m: {type: llm, backend: transformers, weights: w, vram_gb: 0}\n", "$.physical.m.vram_gb: expected a number > 0, got 0"),
        ("physical:\n  m: {type: llm, backend: transformers, weights: w, vram_gb: 1, colour: red}\n", "$.physical.m: object contains unknown field `colour`"),
        ("physical:\n  m: {type: gpu, backend: transformers, weights: w, vram_gb: 1}\n", "$.physical.m.type: invalid enum value 'gpu'"),
        ("physical:\n  m: {type: llm, backend: vllm, weights: w, vram_gb: 1}\n", "$.physical.m.backend: unknown backend 'vllm'"),
        ("physical:\n  m: {type: llm, backend: llamacpp, weights: w, vram_gb: 1, options: {n_ctx: 10}}\n", "$.physical.m.options.n_ctx: expected an integer >= 256, got 10"),
        (f"physical:\n  m: {LLM}\nvirtual:\n  v: {{physical: missing}}\n", "$.virtual.v.physical: no physical model named 'missing'"),
        (f"physical:\n  m: {LLM}\nvirtual:\n  v: {{physical: m, behaviour: {{thinking: yes}}}}\n", "$.virtual.v.behaviour.thinking: only qwen3.5 models"),
        ("budget_gb: -1\n", "$.budget_gb: expected a number > 0, got -1"),
        ("host_ram_budget_gb: -1\n", "$.host_ram_budget_gb: expected a number >= 0, got -1"),
        ("physical: [1, 2]\n", "$.physical: expected a mapping, got [1, 2]"),
        ("physical:\n  m: {type: asr, backend: transformers, weights: w, vram_gb: 1, vision: true}\n", "$.physical.m: vision, tools and family apply to llm models only"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_config_errors_name_the_path_and_the_bad_value(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_models(_write(tmp_path, text))
    assert message in error.value.message


def test_keys_must_be_long_and_unique(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.yaml"
    path.write_text("keys:\n  - {name: a, key: short}\n")
    with pytest.raises(ConfigError, match=r"\$.keys\[0\].key: expected a string of length >= 16"):
        load_keys(path)
    path.write_text("keys:\n  - {name: a, key: aaaaaaaaaaaaaaaaaaaa}\n  - {name: b, key: aaaaaaaaaaaaaaaaaaaa}\n")
    with pytest.raises(ConfigError, match="listed twice"):
        load_keys(path)


def test_check_reports_missing_weights_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "models.yaml").write_text(f"models_dir: .\nphysical:\n  m: {LLM}\n  n: {{type: asr, backend: transformers, weights: here, vram_gb: 1}}\n")
    (tmp_path / "api_keys.yaml").write_text("keys:\n  - {name: a, key: aaaaaaaaaaaaaaaaaaaa}\n")
    (tmp_path / "here").mkdir()
    assert main(["check", "--config", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and str(tmp_path / "w") in out
    assert "ok" in out.split("\n")[2]
    (tmp_path / "w").mkdir()
    assert main(["check", "--config", str(tmp_path)]) == 0


def test_check_exits_non_zero_on_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "models.yaml").write_text("budget_gb: nope\n")
    (tmp_path / "api_keys.yaml").write_text("keys: []\n")
    assert main(["check", "--config", str(tmp_path)]) == 2
    assert "$.budget_gb" in capsys.readouterr().err


# ---- keys llmux serve refuses (issue 10) --------------------------------------------------------


def _serve_keys(tmp_path: Path, key: str) -> Path:
    (tmp_path / "models.yaml").write_text("physical: {}\n")
    (tmp_path / "api_keys.yaml").write_text(f'keys:\n  - {{name: webui, key: "{key}"}}\n')
    return tmp_path


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("CHANGE-ME-open-webui-placeholder", "shipped placeholder"),
        ("sk-llmux-demo-not-a-secret", "demo key published"),
        ("sk-0123456789abcdef", "shorter than 24"),
    ],
)
def test_serve_refuses_placeholder_published_and_short_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key: str, why: str
) -> None:
    import llmux.logging

    monkeypatch.setattr(llmux.logging, "configure", lambda *a, **kw: None)  # keep the suite's logging
    assert main(["serve", "--config", str(_serve_keys(tmp_path, key)), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert why in err and "'webui'" in err and key not in err and "--allow-demo-keys" in err


def test_serve_with_allow_demo_keys_gets_past_the_key_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmux.logging
    import llmux.server

    served: list[object] = []
    monkeypatch.setattr(llmux.server, "run", lambda app, **kw: served.append(app))
    monkeypatch.setattr(llmux.logging, "configure", lambda *a, **kw: None)  # keep the suite's logging
    config = _serve_keys(tmp_path, "sk-llmux-demo-not-a-secret")
    assert main(["serve", "--config", str(config), "--allow-demo-keys", "--data-dir", str(tmp_path / "data")]) == 0
    assert served


def test_the_makefile_demo_passes_the_demo_key_flag() -> None:
    from tests.conftest import ROOT

    demo = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "llmux serve" in line)
    assert "--config config/demo" in demo and "--allow-demo-keys" in demo


def test_the_warm_tier_is_off_unless_configured(tmp_path: Path, reference: Registry) -> None:
    assert reference.host_ram_budget_gb == 0
    assert load_models(_write(tmp_path, "host_ram_budget_gb: 24\n")).host_ram_budget_gb == 24


def test_serve_names_a_data_directory_it_cannot_use(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import llmux.logging

    monkeypatch.setattr(llmux.logging, "configure", lambda *a, **kw: None)  # keep the suite's logging
    config = _serve_keys(tmp_path, "sk-a-long-enough-real-key-0123456789")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    assert main(["serve", "--config", str(config), "--data-dir", str(blocked / "data")]) == 2
    err = capsys.readouterr().err
    assert f"data directory {blocked / 'data'}" in err and "--data-dir" in err


def test_data_dir_in_models_yaml_is_relative_to_the_file(tmp_path: Path) -> None:
    from llmux.registry import load_models

    (tmp_path / "models.yaml").write_text("data_dir: state\n")
    assert load_models(tmp_path / "models.yaml").data_dir == (tmp_path / "state").resolve()
    (tmp_path / "models.yaml").write_text("{}\n")
    assert load_models(tmp_path / "models.yaml").data_dir is None


def test_serve_refuses_a_key_whose_models_name_no_model(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import llmux.logging

    monkeypatch.setattr(llmux.logging, "configure", lambda *a, **kw: None)
    (tmp_path / "models.yaml").write_text("physical: {}\n")
    (tmp_path / "api_keys.yaml").write_text('keys:\n  - {name: w, key: "sk-a-long-enough-real-key-0123456789", models: [typo]}\n')
    assert main(["serve", "--config", str(tmp_path), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "'typo'" in err and "sk-a-long" not in err
