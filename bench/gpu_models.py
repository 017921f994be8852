"""The reference models' architectures, written down as facts, and random-weight checkpoints of
them built on disk in the formats llmux loads (``bench.gpu`` measures them).

Facts (``FULL``): the published ``config.json`` values of each checkpoint, as far as they shape
the weights. Sources, read Dec 2026: Qwen/Qwen3.5-9B and Qwen/Qwen3.5-4B ``config.json``
(text and vision towers); openai/gpt-oss-20b ``config.json`` with its MXFP4
``quantization_config``; CohereLabs/cohere-transcribe-03-2026 (transformers' ``CohereAsrConfig``
defaults are that checkpoint's); Chatterbox (its library's own ``T3()``, ``S3Gen()``,
``VoiceEncoder()`` are the released sizes). Assumed, not read: the FP8 layout of
lovedheart/Qwen3.5-9B-FP8 is the fine-grained e4m3 layout Qwen publishes for its FP8 models
(128x128 blocks, ``weight_scale_inv``; embeddings, ``lm_head``, the vision tower and the
linear-attention ``in_proj_a``/``in_proj_b`` kept in bf16).

What is not real: the weights (random) and the vocabulary (a small trained BPE with the model's
special tokens; the embedding keeps the real vocabulary size, so random ids past the BPE's
decode to nothing). The speed and memory of the architecture are what is measured.

How: the model is instantiated on the ``meta`` device (no memory), its state dict gives every
tensor's name, shape and dtype, and the shards are written directly in the safetensors format
from a small pool of random bytes, so a 9B model builds at disk speed without holding it in RAM.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHARD_BYTES = 4 << 30

QWEN35_ROPE = {
    "rope_type": "default",
    "rope_theta": 10_000_000,
    "mrope_section": [11, 11, 10],
    "mrope_interleaved": True,
    "partial_rotary_factor": 0.25,
}
QWEN35_LINEAR = {
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 32,
}
QWEN35_9B = {
    "text": {
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "vocab_size": 248320,
        "max_position_embeddings": 262144,
        "layer_types": (["linear_attention"] * 3 + ["full_attention"]) * 8,
        "tie_word_embeddings": False,
        "rms_norm_eps": 1e-6,
        "rope_parameters": QWEN35_ROPE,
        **QWEN35_LINEAR,
    },
    "vision": {
        "depth": 27,
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_heads": 16,
        "out_hidden_size": 4096,
        "num_position_embeddings": 2304,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}
QWEN35_4B = {
    "text": {**QWEN35_9B["text"], "hidden_size": 2560, "intermediate_size": 9216, "tie_word_embeddings": True},
    "vision": {
        **QWEN35_9B["vision"],
        "depth": 24,
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "out_hidden_size": 2560,
    },
}
QWEN35_FP8 = {
    "quant_method": "fp8",
    "fmt": "e4m3",
    "activation_scheme": "dynamic",
    "weight_block_size": [128, 128],
    "modules_to_not_convert": ["lm_head", "model.visual", "in_proj_a", "in_proj_b"],
}
GPT_OSS_20B = {
    "hidden_size": 2880,
    "intermediate_size": 2880,
    "num_hidden_layers": 24,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "num_local_experts": 32,
    "num_experts_per_tok": 4,
    "vocab_size": 201088,
    "sliding_window": 128,
    "layer_types": ["sliding_attention", "full_attention"] * 12,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "swiglu_limit": 7.0,
    "attention_bias": True,
    "tie_word_embeddings": False,
    "rope_parameters": {
        "rope_type": "yarn",
        "rope_theta": 150000.0,
        "factor": 32.0,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "original_max_position_embeddings": 4096,
        "truncate": False,
    },
}
GPT_OSS_MXFP4 = {
    "quant_method": "mxfp4",
    "modules_to_not_convert": [
        "model.layers.*.self_attn",
        "model.layers.*.mlp.router",
        "model.embed_tokens",
        "lm_head",
    ],
}
COHERE_ASR = {  # transformers' CohereAsrConfig defaults, written out (they are the checkpoint's)
    "encoder": {
        "hidden_size": 1280,
        "num_hidden_layers": 48,
        "num_attention_heads": 8,
        "intermediate_size": 5120,
        "conv_kernel_size": 9,
        "subsampling_factor": 8,
        "subsampling_conv_channels": 256,
        "num_mel_bins": 128,
    },
    "decoder": {
        "vocab_size": 16384,
        "hidden_size": 1024,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "intermediate_size": 4096,
        "max_position_embeddings": 1024,
    },
}

# The same architectures, small: what ``--tiny`` builds on a CPU in seconds.
TINY_QWEN = {
    "text": {
        **QWEN35_9B["text"],
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 4096,
        "linear_key_head_dim": 16,
        "linear_value_head_dim": 16,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "layer_types": ["linear_attention"] * 3 + ["full_attention"],
        "max_position_embeddings": 4096,
        "rope_parameters": {**QWEN35_ROPE, "mrope_section": [1, 1, 0], "rope_theta": 10000.0},
    },
    "vision": {
        "depth": 1,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "num_position_embeddings": 64,
    },
}
TINY_GPT_OSS = {
    **GPT_OSS_20B,
    "hidden_size": 64,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "vocab_size": 4096,
    "layer_types": ["sliding_attention", "full_attention"],
    "max_position_embeddings": 4096,
}
TINY_COHERE = {
    "encoder": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_kernel_size": 3,
        "subsampling_factor": 8,
        "subsampling_conv_channels": 8,
        "num_mel_bins": 128,
    },
    "decoder": {
        "vocab_size": 512,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 1024,
    },
}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    """safetensors dtype: BF16, F32, F8_E4M3, U8, I64, ..."""
    shape: tuple[int, ...]
    fill: str = "random"
    """random, ones, zeros, or scale (a quantisation scale)."""

    @property
    def nbytes(self) -> int:
        n = ITEMSIZE[self.dtype]
        for d in self.shape:
            n *= d
        return n


ITEMSIZE = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "F8_E4M3": 1, "U8": 1, "I8": 1, "I64": 8, "I32": 4, "BOOL": 1}
TORCH_TO_ST = {
    "torch.bfloat16": "BF16",
    "torch.float16": "F16",
    "torch.float32": "F32",
    "torch.float64": "F64",
    "torch.float8_e4m3fn": "F8_E4M3",
    "torch.uint8": "U8",
    "torch.int8": "I8",
    "torch.int64": "I64",
    "torch.int32": "I32",
    "torch.bool": "BOOL",
}


def fill_of(name: str, dtype: str, shape: tuple[int, ...]) -> str:
    """Random weights that run without overflow: norms at one, biases and running means at zero."""
    leaf = name.rsplit(".", 1)[-1]
    if dtype in ("I64", "I32", "BOOL") or leaf in ("running_mean", "num_batches_tracked"):
        return "zeros"
    if leaf == "running_var" or (len(shape) == 1 and leaf == "weight" and "norm" in name.lower()):
        return "ones"
    if leaf == "bias" and dtype != "U8":
        return "zeros"
    if leaf in ("weight_scale_inv",) or name.endswith("_scales"):
        return "scale"
    return "random"


def tensors_of(model: Any) -> list[Tensor]:
    """Every tensor a checkpoint of ``model`` (on any device, meta included) holds: its
    parameters (tied ones once) and persistent buffers."""
    unique = dict(model.named_parameters())
    every = dict(model.named_parameters(remove_duplicate=False))
    out = []
    for name, value in model.state_dict().items():
        if name in every and name not in unique:
            continue  # a tied weight: the checkpoint stores it once
        dtype = TORCH_TO_ST[str(value.dtype)]
        shape = tuple(int(d) for d in value.shape)
        out.append(Tensor(name, dtype, shape, fill_of(name, dtype, shape)))
    return out


# ---- writing safetensors shards directly ------------------------------------------------------


class Pools:
    """A few MB of random bytes per dtype; every tensor is cut from them at a moving offset."""

    SIZE = 16 << 20

    def __init__(self) -> None:
        import torch

        g = torch.Generator().manual_seed(0)
        normal = torch.randn(self.SIZE // 2, generator=g)
        self.random = {
            "BF16": (normal * 0.02).to(torch.bfloat16).view(torch.uint8).numpy().tobytes(),
            "F16": (normal * 0.02).to(torch.float16).view(torch.uint8).numpy().tobytes(),
            "F32": (normal[: self.SIZE // 4] * 0.02).numpy().tobytes(),
            "F8_E4M3": normal.clamp(-4, 4).to(torch.float8_e4m3fn).view(torch.uint8).numpy().tobytes(),
            "U8": torch.randint(0, 256, (self.SIZE,), dtype=torch.uint8, generator=g).numpy().tobytes(),
        }
        self.random["I8"] = self.random["U8"]
        one = {
            "BF16": torch.ones(1, dtype=torch.bfloat16),
            "F16": torch.ones(1, dtype=torch.float16),
            "F32": torch.ones(1),
            "F64": torch.ones(1, dtype=torch.float64),
        }
        scale = {"F32": torch.full((1,), 0.01), "BF16": torch.full((1,), 0.01, dtype=torch.bfloat16)}
        self.ones = {k: v.view(torch.uint8).numpy().tobytes() for k, v in one.items()}
        # An MXFP4 scale byte is a power-of-two exponent biased by 127: 118 is 2**-9.
        self.scale = {**{k: v.view(torch.uint8).numpy().tobytes() for k, v in scale.items()}, "U8": bytes([118])}
        self._offset = 0

    def chunks(self, tensor: Tensor) -> Iterator[memoryview]:
        size = tensor.nbytes
        if tensor.fill in ("ones", "scale", "zeros"):
            unit = {"ones": self.ones, "scale": self.scale}.get(tensor.fill, {}).get(tensor.dtype)
            unit = unit or bytes(ITEMSIZE[tensor.dtype])
            block = unit * ((1 << 20) // len(unit))
        else:
            block = self.random[tensor.dtype]
        view = memoryview(block)  # slices without copies
        start = self._offset % len(block)
        self._offset += 4099 * ITEMSIZE[tensor.dtype]  # next tensor starts elsewhere, aligned
        start -= start % ITEMSIZE[tensor.dtype]
        while size > 0:
            piece = view[start : start + size]
            yield piece
            size -= len(piece)
            start = 0


def write_safetensors(directory: Path, tensors: list[Tensor], *, prefix: str = "model") -> int:
    """Shards of at most ``SHARD_BYTES`` plus an index (if more than one); returns bytes written."""
    shards: list[list[Tensor]] = [[]]
    used = 0
    for t in tensors:
        if shards[-1] and used + t.nbytes > SHARD_BYTES:
            shards.append([])
            used = 0
        shards[-1].append(t)
        used += t.nbytes
    pools = Pools()
    names = (
        [f"{prefix}.safetensors"]
        if len(shards) == 1
        else [f"{prefix}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    weight_map, total = {}, 0
    for name, shard in zip(names, shards, strict=True):
        total += _write_shard(directory / name, shard, pools)
        weight_map.update({t.name: name for t in shard})
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / f"{prefix}.safetensors.index.json").write_text(json.dumps(index, indent=1))
    return total


def _write_shard(path: Path, tensors: list[Tensor], pools: Pools) -> int:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors:
            for piece in pools.chunks(t):
                f.write(piece)
        f.flush()
        os.fsync(f.fileno())  # on disk, so the page cache can be dropped for a cold read
    return offset


# ---- the checkpoints --------------------------------------------------------------------------


@dataclass
class Built:
    directory: Path
    bytes: int
    notes: list[str] = field(default_factory=list)


def _meta_model(auto_class: Any, config: Any) -> Any:
    import torch

    with torch.device("meta"):
        return auto_class.from_config(config, dtype=torch.bfloat16)


def build_qwen35(directory: Path, facts: dict[str, Any], *, fp8: bool) -> Built:
    """A Qwen3.5 (text + vision) checkpoint with a Qwen3VL processor; FP8 linears if ``fp8``."""
    from transformers import (
        AutoModelForImageTextToText,
        FineGrainedFP8Config,
        Qwen2VLImageProcessor,
        Qwen3_5Config,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    from tests.fixtures.tiny_models import QWEN_ADDED, QWEN_SPECIAL, _tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(
        QWEN_SPECIAL,
        QWEN_ADDED,
        "qwen35.jinja",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    ids = tokenizer.convert_tokens_to_ids
    tokenizer.image_token, tokenizer.video_token = "<|image_pad|>", "<|video_pad|>"
    tokenizer.vision_start_token, tokenizer.vision_end_token = "<|vision_start|>", "<|vision_end|>"
    text = {**facts["text"], "eos_token_id": ids("<|im_end|>"), "pad_token_id": ids("<|endoftext|>")}
    config = Qwen3_5Config(
        text_config=text,
        vision_config=facts["vision"],
        tie_word_embeddings=text["tie_word_embeddings"],
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    model = _meta_model(AutoModelForImageTextToText, config)
    if fp8:
        from transformers.integrations.finegrained_fp8 import replace_with_fp8_linear

        quant = FineGrainedFP8Config(
            weight_block_size=tuple(QWEN35_FP8["weight_block_size"]),
            modules_to_not_convert=QWEN35_FP8["modules_to_not_convert"],
        )
        replace_with_fp8_linear(model, quant.modules_to_not_convert, quant, pre_quantized=True)
        config.quantization_config = dict(QWEN35_FP8)
    written = write_safetensors(directory, tensors_of(model))
    config.save_pretrained(directory)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.generation_config.save_pretrained(directory)
    Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            patch_size=facts["vision"].get("patch_size", 16), merge_size=2, temporal_patch_size=2
        ),
        video_processor=Qwen3VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    ).save_pretrained(directory)
    return Built(directory, written)


def build_gpt_oss(directory: Path, facts: dict[str, Any]) -> Built:
    """A gpt-oss checkpoint in the released layout: MXFP4 expert blocks and scales, bf16 rest."""
    from transformers import AutoModelForCausalLM, GptOssConfig

    from tests.fixtures.tiny_models import HARMONY_SPECIAL, _tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(
        HARMONY_SPECIAL,
        [],
        "harmony.jinja",
        eos_token="<|return|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    ids = tokenizer.convert_tokens_to_ids
    eos = [ids("<|return|>"), ids("<|call|>")]
    config = GptOssConfig(**facts, eos_token_id=eos, pad_token_id=ids("<|endoftext|>"))
    model = _meta_model(AutoModelForCausalLM, config)
    tensors = [t for t in tensors_of(model) if ".mlp.experts." not in t.name]
    experts, hidden, inter = facts["num_local_experts"], facts["hidden_size"], facts["intermediate_size"]
    for i in range(facts["num_hidden_layers"]):
        p = f"model.layers.{i}.mlp.experts."
        for proj, rows, cols in (("gate_up_proj", 2 * inter, hidden), ("down_proj", hidden, inter)):
            tensors += [
                Tensor(p + proj + "_blocks", "U8", (experts, rows, cols // 32, 16)),
                Tensor(p + proj + "_scales", "U8", (experts, rows, cols // 32), "scale"),
                Tensor(p + proj + "_bias", "BF16", (experts, rows), "zeros"),
            ]
    written = write_safetensors(directory, tensors)
    config.quantization_config = dict(GPT_OSS_MXFP4)
    config.save_pretrained(directory)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.generation_config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Built(directory, written)


def build_cohere_asr(directory: Path, facts: dict[str, Any]) -> Built:
    """A cohere_asr checkpoint with its feature extractor and a tokenizer holding its prompt tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        AutoModelForSpeechSeq2Seq,
        CohereAsrConfig,
        CohereAsrFeatureExtractor,
        CohereAsrProcessor,
        PreTrainedTokenizerFast,
    )

    from tests.support.tiny_cohere import PROMPT_TOKENS, SPECIALS

    directory.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    corpus = ["the quick brown fox jumps over the lazy dog", "der schnelle braune fuchs springt"] * 20
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=120, special_tokens=SPECIALS + PROMPT_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", bos_token="<bos>", eos_token="</s>", pad_token="<pad>"
    )
    config = CohereAsrConfig(encoder_config=facts["encoder"], decoder_start_token_id=4, **facts["decoder"])
    model = _meta_model(AutoModelForSpeechSeq2Seq, config)
    written = write_safetensors(directory, tensors_of(model))
    config.save_pretrained(directory)
    # Random weights never say end-of-text: bound the decoder, as a real one bounds itself.
    model.generation_config.max_new_tokens = 64
    model.generation_config.save_pretrained(directory)
    CohereAsrProcessor(CohereAsrFeatureExtractor(), fast).save_pretrained(directory)
    return Built(directory, written)


def build_chatterbox(directory: Path, voices: Path) -> Built:
    """Chatterbox (standard) at its released size: the library's own modules, randomly
    initialised (their init keeps the vocoder's numbers finite), a character tokenizer and a
    reference voice (a synthetic vowel) in ``voices``."""
    import numpy as np
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.voice_encoder import VoiceEncoder
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    from llmux.audio.encode import encode_audio

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    written = 0
    for name, module in (("ve", VoiceEncoder()), ("t3_cfg", T3()), ("s3gen", S3Gen())):
        state = {k: v.contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(directory / f"{name}.safetensors"))
        written += (directory / f"{name}.safetensors").stat().st_size
        del module, state
    specials = ["[START]", "[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials + list("abcdefghijklmnopqrstuvwxyz.,!?'"))}
    text = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    text.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    text.save(str(directory / "tokenizer.json"))
    voices.mkdir(parents=True, exist_ok=True)
    t = np.arange(24_000 * 4) / 24_000
    vowel = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((160, 320, 640, 1280), 1))
    wave = (0.2 * vowel * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    (voices / "bench.wav").write_bytes(encode_audio(wave, 24_000, "wav"))
    return Built(directory, written)
