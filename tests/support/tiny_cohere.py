"""A tiny random ``cohere_asr`` checkpoint (model, feature extractor, tokenizer) on disk.

Random weights transcribe gibberish; what the tests check is that the llmux backend drives the
real transformers classes end to end: files -> processor -> generate -> decode, with the
language prompt tokens the processor builds.
"""

from __future__ import annotations

from pathlib import Path

PROMPT_TOKENS = [
    "▁", "<|startofcontext|>", "<|startoftranscript|>", "<|emo:undefined|>", "<|pnc|>", "<|nopnc|>",
    "<|noitn|>", "<|notimestamp|>", "<|nodiarize|>", "<|en|>", "<|de|>", "<|fr|>",
]
SPECIALS = ["<unk>", "<s>", "<pad>", "</s>", "<bos>"]  # ids 0..4: pad=2, eos=3, bos=4 as the config


def build(directory: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CohereAsrConfig,
        CohereAsrFeatureExtractor,
        CohereAsrForConditionalGeneration,
        CohereAsrProcessor,
        PreTrainedTokenizerFast,
    )

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=SPECIALS + PROMPT_TOKENS)
    corpus = ["the quick brown fox jumps over the lazy dog", "der schnelle braune fuchs springt"] * 20
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<bos>", eos_token="</s>", pad_token="<pad>"
    )
    encoder = {
        "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "subsampling_conv_channels": 8, "num_mel_bins": 128, "conv_kernel_size": 3,
    }
    config = CohereAsrConfig(
        encoder_config=encoder, vocab_size=len(fast), hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=1024,
        decoder_start_token_id=4,
    )
    torch.manual_seed(0)
    model = CohereAsrForConditionalGeneration(config).eval()
    model.generation_config.max_new_tokens = 8
    model.save_pretrained(directory)
    CohereAsrProcessor(CohereAsrFeatureExtractor(), fast).save_pretrained(directory)
    return directory
