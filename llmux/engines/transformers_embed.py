"""A safetensors embedding model through plain transformers: ``AutoModel`` + pooling.

Pooling follows a sentence-transformers checkpoint's ``1_Pooling/config.json`` (mean, CLS or
last token) unless ``options.pooling`` says otherwise; without one it is the attention-masked
mean, the sentence-transformers default. The checkpoint's Dense/projection modules, if any, are
not applied (the models this serves, MiniLM/BGE/E5-style encoders, have none).
"""

from __future__ import annotations

import gc
import json
import threading
import time
from pathlib import Path
from typing import Any

import structlog
import torch
from transformers import AutoModel, AutoTokenizer

from llmux.engines.devices import open_measured, torch_device
from llmux.engines.embedding import check_lengths, normalised
from llmux.protocol.errors import ModelLoadFailed
from llmux.registry import PhysicalModel, Registry
from llmux.registry.options import TransformersOptions

log = structlog.get_logger("llmux.engines")

_ST_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_lasttoken": "last"}


def checkpoint_pooling(path: Path) -> str:
    """What a sentence-transformers checkpoint declares (``mean`` when it declares nothing)."""
    config = path / "1_Pooling" / "config.json"
    if config.is_file():
        declared = json.loads(config.read_text(encoding="utf-8"))
        for key, mode in _ST_POOLING.items():
            if declared.get(key):
                return mode
    return "mean"


def checkpoint_max_tokens(path: Path) -> int | None:
    """A sentence-transformers checkpoint's ``max_seq_length`` (what it was trained to embed)."""
    config = path / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        return int(value) if isinstance(value, int) and value > 0 else None
    return None


def pool(hidden: Any, mask: Any, mode: str) -> Any:
    """One vector per sequence from ``hidden`` (batch, tokens, dim) under ``mask`` (batch, tokens)."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "last":  # right padding (the tokenizers here pad right): each row's last real token
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class TransformersEmbedder:
    def __init__(self, spec: PhysicalModel, registry: Registry, options: TransformersOptions) -> None:
        self.spec = spec
        self.path = registry.weights_path(spec)
        self.options = options
        self.device = torch_device(options.device)
        self.model: Any = None
        self.tokenizer: Any = None
        self.pooling = "mean"
        self.dimensions = 0
        self.context = 0
        self._tokenizing = threading.Lock()
        """A fast tokenizer that pads is not safe to call from two threads at once ("Already
        borrowed"); forward passes are."""

    def load(self) -> float | None:
        if not self.path.is_dir():
            raise ModelLoadFailed(f"weights not found: {self.path}")
        started = time.perf_counter()
        footprint = open_measured(self._open, self.unload, self.options.threads)
        self.pooling = checkpoint_pooling(self.path) if self.options.pooling == "model" else self.options.pooling
        config = self.model.config
        self.dimensions = int(config.hidden_size)
        limit = int(getattr(config, "max_position_embeddings", 0) or 512)
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", limit)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < limit:
            limit = tokenizer_limit  # BERT-style: 512 positions, of which the tokenizer says how many
        limit = min(limit, checkpoint_max_tokens(self.path) or limit)
        self.context = min(self.options.max_context or limit, limit)
        log.info(
            "model.weights_loaded",
            model=self.spec.id,
            device=self.device,
            context=self.context,
            dimensions=self.dimensions,
            pooling=self.pooling,
            seconds=round(time.perf_counter() - started, 3),
            gb=footprint,
        )
        return footprint

    def _open(self) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.tokenizer.padding_side = "right"  # ``pool`` finds the last token by the mask
        dtype = torch.float32 if self.options.dtype == "auto" and self.device == "cpu" else self.options.dtype
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        self.model = AutoModel.from_pretrained(self.path, dtype=dtype, device_map=self.device).eval()

    def unload(self) -> None:
        self.model = self.tokenizer = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def embed(self, texts: list[str], cancel: threading.Event) -> tuple[Any, int]:
        with self._tokenizing:
            counts = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        check_lengths(counts, self.context)
        rows: list[Any] = []
        size = self.options.batch_size
        for start in range(0, len(texts), size):
            if cancel.is_set():
                break
            with self._tokenizing:
                batch = self.tokenizer(texts[start : start + size], padding=True, return_tensors="pt")
            batch = batch.to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            rows.append(pool(hidden, batch["attention_mask"], self.pooling).float().cpu())
        vectors = torch.cat(rows).numpy() if rows else torch.zeros((0, self.dimensions)).numpy()
        return (normalised(vectors) if self.options.normalize else vectors), sum(counts)
