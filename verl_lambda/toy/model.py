"""A tiny randomly initialised Qwen2 model with a character-level tokenizer, built offline.

Layer 2 (foundations).
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

PAD, EOS, BOS_TURN = "<|endoftext|>", "<|im_end|>", "<|im_start|>"
# A small alphabet keeps the vocabulary (and so each step's chance of sampling EOS) at about 1/50: the untrained
# model then stops at varied lengths, which is what a length-weighted loss needs to see.
CHARACTERS = string.ascii_lowercase + string.digits + " \n:.,?!'"
# The chat template renders the message text only: a role header between the prompt and the response would put the
# class of the prompt out of reach of a 2-layer model's first response token.
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"

# Model sizes selectable by name (VERL_LAMBDA_MODEL_SIZE in the demo). Every size has 32-dimensional attention
# heads: the smallest head size vLLM's CPU attention supports (``rollout.name=vllm`` on the cpu platform).
SIZES = {
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
    ),
    "small": dict(
        hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2
    ),
    "base": dict(
        hidden_size=256, intermediate_size=768, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4
    ),
}


def build_tokenizer():
    """A tokenizer with one token per character of ``CHARACTERS`` (plus ChatML's special tokens).

    It is a byte-level BPE without merges: transformers loads any tokenizer next to a Qwen2 config as Qwen2's
    byte-level tokenizer, so the vocabulary is written in byte-level symbols and survives that reload unchanged.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_symbols = _byte_level_symbols()
    specials = [PAD, EOS, BOS_TURN]
    vocab = {token: i for i, token in enumerate(specials)}
    for char in CHARACTERS:
        vocab[byte_symbols[ord(char)]] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=EOS, pad_token=PAD, additional_special_tokens=[BOS_TURN]
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _byte_level_symbols() -> dict[int, str]:
    """GPT-2's byte-to-unicode table: printable bytes map to themselves, the others to code points from 256 up."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return symbols


def build_model(out_dir: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random Qwen2 causal LM and its tokenizer to ``out_dir`` (idempotent for a given size and seed)."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    if size not in SIZES:
        raise ValueError(f"model size must be one of {sorted(SIZES)}, got {size!r}")
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **SIZES[size],
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
