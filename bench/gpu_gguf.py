"""A random-weight GGUF of the Qwen3.5 text architecture (llama.cpp's ``qwen35``), for the
llama.cpp engine's row of ``bench.gpu``: the text tower of ``bench.gpu_models.QWEN35_9B`` in
Q8_0 (the quantisation of the deployment's Qwen3.5-9B-Uncensored GGUF), norms and the small
recurrent parameters in F32. Tensors are streamed to the file one at a time, each cut from a
pool of valid Q8_0 blocks, so a 9B GGUF needs no more memory than its largest tensor.

The vocabulary is the tests' SentencePiece-style one (byte fallback, ChatML control tokens) with
the Qwen3.5 chat template; the embedding keeps the real vocabulary size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

Q8_BLOCK = 32
Q8_BYTES = 34  # one float16 scale + 32 int8


def qwen35_tensors(text: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """(GGUF name, numpy shape [out, in]) of every tensor llama.cpp's qwen35 loader asks for."""
    h, ff, vocab = text["hidden_size"], text["intermediate_size"], text["vocab_size"]
    heads, kv, hd = text["num_attention_heads"], text["num_key_value_heads"], text["head_dim"]
    kh, kd = text["linear_num_key_heads"], text["linear_key_head_dim"]
    vh, vd = text["linear_num_value_heads"], text["linear_value_head_dim"]
    conv = 2 * kh * kd + vh * vd
    out = [("token_embd.weight", (vocab, h)), ("output_norm.weight", (h,)), ("output.weight", (vocab, h))]
    for i, kind in enumerate(text["layer_types"]):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (h,)), (b + "post_attention_norm.weight", (h,))]
        if kind == "full_attention":
            out += [
                (b + "attn_q.weight", (2 * heads * hd, h)),  # the query and its output gate, fused
                (b + "attn_k.weight", (kv * hd, h)),
                (b + "attn_v.weight", (kv * hd, h)),
                (b + "attn_output.weight", (h, heads * hd)),
                (b + "attn_q_norm.weight", (hd,)),
                (b + "attn_k_norm.weight", (hd,)),
            ]
        else:
            out += [
                (b + "attn_qkv.weight", (conv, h)),
                (b + "attn_gate.weight", (vh * vd, h)),
                (b + "ssm_conv1d.weight", (conv, text["linear_conv_kernel_dim"])),
                (b + "ssm_a", (vh,)),
                (b + "ssm_dt.bias", (vh,)),
                (b + "ssm_beta.weight", (vh, h)),
                (b + "ssm_alpha.weight", (vh, h)),
                (b + "ssm_norm.weight", (vd,)),
                (b + "ssm_out.weight", (h, vh * vd)),
            ]
        out += [(b + "ffn_gate.weight", (ff, h)), (b + "ffn_up.weight", (ff, h)), (b + "ffn_down.weight", (h, ff))]
    return out


def build_qwen35_gguf(path: Path, text: dict[str, Any], *, context: int = 32768) -> int:
    """Write the GGUF; returns its size in bytes."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter, TokenType

    from tests.fixtures.tiny_models import GGUF_CONTROL, GGUF_USER, GGUF_WORDS, TEMPLATES

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + GGUF_WORDS + GGUF_CONTROL + GGUF_USER
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    types += [TokenType.NORMAL] * len(GGUF_WORDS) + [TokenType.CONTROL] * len(GGUF_CONTROL)
    types += [TokenType.USER_DEFINED] * len(GGUF_USER)
    pad = text["vocab_size"] - len(tokens)  # the real embedding size: unused slots
    scores = [0.0] * 259 + [-float(i) for i in range(len(GGUF_WORDS))] + [0.0] * (len(GGUF_CONTROL) + len(GGUF_USER))
    tokens += [f"<unused{i}>" for i in range(pad)]
    types += [TokenType.UNUSED] * pad
    scores += [0.0] * pad

    rope = text["rope_parameters"]
    w = GGUFWriter(str(path), "qwen35")
    w.add_context_length(context)
    w.add_embedding_length(text["hidden_size"])
    w.add_block_count(text["num_hidden_layers"])
    w.add_feed_forward_length(text["intermediate_size"])
    w.add_head_count(text["num_attention_heads"])
    w.add_head_count_kv(text["num_key_value_heads"])
    w.add_key_length(text["head_dim"])
    w.add_value_length(text["head_dim"])
    w.add_rope_dimension_count(int(text["head_dim"] * rope["partial_rotary_factor"]))
    w.add_rope_dimension_sections([*rope["mrope_section"], 0])
    w.add_rope_freq_base(float(rope["rope_theta"]))
    w.add_layer_norm_rms_eps(text["rms_norm_eps"])
    w.add_ssm_conv_kernel(text["linear_conv_kernel_dim"])
    w.add_ssm_inner_size(text["linear_num_value_heads"] * text["linear_value_head_dim"])
    w.add_ssm_state_size(text["linear_key_head_dim"])
    w.add_ssm_time_step_rank(text["linear_num_value_heads"])
    w.add_ssm_group_count(text["linear_num_key_heads"])
    w.add_full_attention_interval(4)
    w.add_vocab_size(text["vocab_size"])
    w.add_file_type(7)  # mostly Q8_0
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)
    w.add_chat_template((TEMPLATES / "qwen35.jinja").read_text())

    rng = np.random.default_rng(0)
    block = np.zeros((1 << 15, Q8_BYTES), dtype=np.uint8)  # 32k valid Q8_0 blocks: scale 2**-9, random int8
    block[:, :2] = np.frombuffer(np.float16(2**-9).tobytes(), dtype=np.uint8)
    block[:, 2:] = rng.integers(-127, 128, size=(1 << 15, Q8_BLOCK), dtype=np.int8).view(np.uint8)
    pool = block.reshape(-1)
    plan = []
    for name, shape in qwen35_tensors(text):
        quantised = len(shape) == 2 and shape[1] % Q8_BLOCK == 0 and "conv1d" not in name
        if quantised:
            byte_shape = (shape[0], shape[1] // Q8_BLOCK * Q8_BYTES)
            w.add_tensor_info(
                name, byte_shape, np.dtype(np.uint8), byte_shape[0] * byte_shape[1], raw_dtype=GGMLQuantizationType.Q8_0
            )
        else:
            w.add_tensor_info(name, shape, np.dtype(np.float32), 4 * int(np.prod(shape)))
        plan.append((name, shape, quantised))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape, quantised in plan:
        if quantised:
            size = shape[0] * shape[1] // Q8_BLOCK * Q8_BYTES
            data = np.resize(pool, size).reshape(shape[0], -1)
        elif name.endswith("norm.weight"):
            data = np.ones(shape, dtype=np.float32)
        elif name.endswith("ssm_a"):
            data = -np.ones(shape, dtype=np.float32)  # A = -exp(A_log): negative, a decaying state
        else:
            data = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        w.write_tensor_data(data)
    w.close()
    return path.stat().st_size
