"""Read ``models.yaml`` / ``api_keys.yaml`` into a checked, frozen ``Registry``.

Every error names the path and the bad value, e.g.
``$.physical.qwen3.5-4b.vram_gb: expected a number > 0, got "four"``.
Field checks live in the Structs; cross-record checks (a virtual model naming a missing
physical one) live here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from llmux.protocol.errors import ConfigError
from llmux.registry.config import (
    DEFAULT_EVICTION_ORDER,
    ApiKeysFile,
    ModelsFile,
    ModelType,
    PhysicalModel,
    VirtualModel,
)
from llmux.registry.options import BACKEND_OPTIONS
from llmux.registry.registry import Registry

T = TypeVar("T")

_WORDS = {
    "`float`": "a number",
    "`int`": "an integer",
    "`str`": "a string",
    "`bool`": "a boolean",
    "`object`": "a mapping",
    "`array`": "a list",
    "`null`": "null",
}
_PATH = re.compile(r" - at `(\$[^`]*)`$")


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def _lookup(data: Any, path: str) -> tuple[bool, Any]:
    """Follow a msgspec path (``$.a.b[2]``) through plain data; (found, value)."""
    node = data
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path[1:]):
        try:
            node = node[int(index)] if index else node[name]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, node


def _explain(exc: msgspec.ValidationError, data: Any, prefix: str) -> str:
    """Turn msgspec's message into ``<path>: expected ..., got <value>``."""
    message = str(exc)
    match = _PATH.search(message)
    local = match.group(1) if match else "$"
    message = _PATH.sub("", message)
    message = re.sub(r", got `\w+`$", "", message)
    for word, plain in _WORDS.items():
        message = message.replace(word, plain)
    message = re.sub(r"(\d+)\.0\b", r"\1", message)
    message = message[0].lower() + message[1:]
    found, value = _lookup(data, local)
    where = prefix + local[1:]
    if found and message.startswith("expected"):
        message += f", got {json.dumps(value, default=str)}"
    return f"{where}: {message}"


def _convert(data: Any, type_: type[T], prefix: str) -> T:
    try:
        return msgspec.convert(data, type_, str_keys=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, data, prefix)) from None


def _physical(key: str, raw: Any) -> PhysicalModel:
    where = f"$.physical.{key}"
    if isinstance(raw, dict) and "id" in raw:
        raise ConfigError(f"{where}.id: the id is the key under physical:, remove this field")
    spec = _convert(raw, PhysicalModel, where)
    options_type = BACKEND_OPTIONS.get(spec.backend)
    if options_type is None:
        known = ", ".join(sorted(BACKEND_OPTIONS))
        raise ConfigError(f"{where}.backend: unknown backend {spec.backend!r} (known: {known})")
    options = _convert(spec.options, options_type, f"{where}.options")
    if spec.remote:
        _check_remote(where, raw, options)
    else:
        _check_local(where, raw, spec)
    if spec.type is not ModelType.LLM and (spec.vision or spec.tools or spec.family):
        raise ConfigError(f"{where}: vision, tools and family apply to llm models only")
    if spec.matryoshka and spec.type is not ModelType.EMBEDDING:
        raise ConfigError(f"{where}.matryoshka: applies to embedding models only")
    return msgspec.structs.replace(spec, id=key)


def _check_local(where: str, raw: dict[str, Any], spec: PhysicalModel) -> None:
    """Local weights occupy VRAM: both are required (the Struct defaults them for upstreams)."""
    for name in ("weights", "vram_gb"):
        if name not in raw:
            raise ConfigError(f"{where}: object missing required field `{name}`")
    if spec.vram_gb <= 0:
        raise ConfigError(f"{where}.vram_gb: expected a number > 0, got {json.dumps(raw['vram_gb'])}")


def _check_remote(where: str, raw: dict[str, Any], options: Any) -> None:
    """An upstream has no weights here and costs no VRAM: fields that would mean otherwise
    are errors rather than silently ignored."""
    for name in ("weights", "hf_repo", "hf_files", "family"):
        if name in raw:
            raise ConfigError(f"{where}.{name}: an openai upstream has no local weights or template; remove it")
    if raw.get("vram_gb", 0) != 0:
        raise ConfigError(f"{where}.vram_gb: an openai upstream uses no local VRAM; remove it (or set 0)")
    if options.api_key is not None and options.api_key_env is not None:
        raise ConfigError(f"{where}.options: set api_key or api_key_env, not both")


def _virtual(key: str, raw: Any, physical: dict[str, PhysicalModel]) -> VirtualModel:
    where = f"$.virtual.{key}"
    if isinstance(raw, dict) and "id" in raw:
        raise ConfigError(f"{where}.id: the id is the key under virtual:, remove this field")
    spec = _convert(raw, VirtualModel, where)
    target = physical.get(spec.physical)
    if target is None:
        raise ConfigError(f"{where}.physical: no physical model named {spec.physical!r}")
    b = spec.behaviour
    if b.thinking is not None and target.family != "qwen3.5":
        raise ConfigError(f"{where}.behaviour.thinking: only qwen3.5 models have a thinking switch")
    if b.system_prompt is not None and target.type is not ModelType.LLM:
        raise ConfigError(f"{where}.behaviour.system_prompt: only llm models take a system prompt")
    if b.reasoning_effort is not None and target.family != "gpt-oss":
        raise ConfigError(f"{where}.behaviour.reasoning_effort: only gpt-oss models take a reasoning level")
    return msgspec.structs.replace(spec, id=key)


def load_models(path: Path) -> Registry:
    """Decode and cross-check ``models.yaml``."""
    data = _read_yaml(path)
    if data is None:
        data = {}
    top = _convert(data, ModelsFile, "$")
    physical = {key: _physical(str(key), raw) for key, raw in top.physical.items()}
    virtual = {key: _virtual(str(key), raw, physical) for key, raw in top.virtual.items()}
    lowered: dict[str, str] = {}
    for name in virtual:
        if name.lower() in lowered:
            raise ConfigError(f"$.virtual.{name}: differs from {lowered[name.lower()]!r} only in case")
        lowered[name.lower()] = name
    for alias, target in top.aliases.items():
        if alias.lower() in lowered:
            raise ConfigError(f"$.aliases.{alias}: is already the name of the virtual model {lowered[alias.lower()]!r}")
        if target not in virtual:
            raise ConfigError(f"$.aliases.{alias}: no virtual model named {target!r}")
    _check_eviction_order(top.eviction_order)
    preload = _physical_ids(top.preload, "preload", physical, virtual, top.aliases)
    preload = sorted(preload, key=lambda mid: -top.eviction_order.index(physical[mid].type))  # ASR, TTS, LLM; stable
    pinned = _physical_ids(top.pinned, "pinned", physical, virtual, top.aliases)
    base = path.parent
    models_dir = Path(top.models_dir)
    if not models_dir.is_absolute():
        models_dir = (base / models_dir).resolve()
    voices_dir = None
    if top.voices_dir is not None:
        voices_dir = Path(top.voices_dir)
        if not voices_dir.is_absolute():
            voices_dir = (base / voices_dir).resolve()
    data_dir = None if top.data_dir is None else (base / Path(top.data_dir).expanduser()).resolve()
    return Registry(
        budget_gb=top.budget_gb,
        models_dir=models_dir,
        voices_dir=voices_dir,
        limits=top.limits,
        physical=physical,
        virtual=virtual,
        preload=tuple(preload),
        pinned=tuple(pinned),
        aliases=dict(top.aliases),
        host_ram_budget_gb=top.host_ram_budget_gb,
        eviction_order=top.eviction_order,
        data_dir=data_dir,
    )


def _physical_ids(
    names: tuple[str, ...],
    field: str,
    physical: dict[str, PhysicalModel],
    virtual: dict[str, VirtualModel],
    aliases: dict[str, str],
) -> list[str]:
    """``preload:`` / ``pinned:`` entries (physical ids, virtual names or aliases) as physical
    ids, each once, in the order first named."""
    ids: list[str] = []
    for i, name in enumerate(names):
        if name in physical:
            mid = name
        elif aliases.get(name, name) in virtual:
            mid = virtual[aliases.get(name, name)].physical
        else:
            raise ConfigError(f"$.{field}[{i}]: no physical or virtual model named {name!r}")
        if physical[mid].remote:
            raise ConfigError(f"$.{field}[{i}]: {name!r} is a remote upstream: llmux does not load or pin it")
        if mid not in ids:
            ids.append(mid)
    return ids


def _check_eviction_order(order: tuple[ModelType, ...]) -> None:
    """Every type once; the requirements' LLM < TTS < ASR kept (only embedding may move)."""
    if sorted(order) != sorted(ModelType) or len(order) != len(ModelType):
        names = ", ".join(t.value for t in DEFAULT_EVICTION_ORDER)
        raise ConfigError(f"$.eviction_order: list every model type once ({names})")
    fixed = [t for t in order if t is not ModelType.EMBEDDING]
    if fixed != [ModelType.LLM, ModelType.TTS, ModelType.ASR]:
        raise ConfigError(
            "$.eviction_order: llm, tts and asr keep that order (LLMUX-VRAM-002); only embedding may move"
        )


def load_keys(path: Path) -> ApiKeysFile:
    """Decode ``api_keys.yaml``; names and keys must be unique."""
    try:
        keys = _convert(_read_yaml(path), ApiKeysFile, "$")
    except ConfigError as exc:  # "..., got <value>" would print a secret into the log
        raise ConfigError(re.sub(r"^(\$\.keys\[\d+\]\.key: .*?), got .*$", r"\1", exc.message, flags=re.S)) from None
    seen_names: set[str] = set()
    seen_keys: set[str] = set()
    for i, entry in enumerate(keys.keys):
        if entry.name in seen_names:
            raise ConfigError(f"$.keys[{i}].name: duplicate name {entry.name!r}")
        if entry.key in seen_keys:
            raise ConfigError(f"$.keys[{i}].key: the same key is listed twice (one key per client)")
        seen_names.add(entry.name)
        seen_keys.add(entry.key)
    return keys
