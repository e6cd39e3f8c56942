"""Tiny Hugging Face models for the tests, built from a config (seeded) and saved as
save_pretrained saves them: nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

# A Llama small enough for every test; callers override what they need.
LLAMA = dict(
    vocab_size=64,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    max_position_embeddings=32,
    tie_word_embeddings=True,
)


def build_llama(dtype: torch.dtype = torch.float32, **config) -> torch.nn.Module:
    """A seeded LlamaForCausalLM of ``LLAMA`` (updated by ``config``) in ``dtype``, in eval mode."""
    import transformers

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**LLAMA, **config}))
    return model.to(dtype).eval()


def save_llama(
    folder: Path, dtype: torch.dtype = torch.float32, shard: int | None = None, **config
) -> torch.nn.Module:
    """:func:`build_llama`, saved to ``folder`` (in shards of ``shard`` bytes when given)."""
    model = build_llama(dtype, **config)
    extra = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(folder, safe_serialization=True, **extra)
    return model
