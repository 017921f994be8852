"""Model registry: configuration files -> frozen Structs; resolve virtual names."""

from llmux.registry.config import ApiKey, ApiKeysFile, Behaviour, ModelType, PhysicalModel, VirtualModel
from llmux.registry.loader import load_keys, load_models
from llmux.registry.registry import Registry

__all__ = [
    "ApiKey",
    "ApiKeysFile",
    "Behaviour",
    "ModelType",
    "PhysicalModel",
    "Registry",
    "VirtualModel",
    "load_keys",
    "load_models",
]
