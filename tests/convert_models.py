"""Tiny models and helpers shared by the converter tests: a Llama built from a config, and
each tensor's compared settings in the plan a conversion's rules compile to."""

from __future__ import annotations

import dsl_compress as dc
from dsl_compress.tools.convert.selection_check import normalised
from dsl_compress.vocab import Mode


def tiny_llama():
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return transformers.LlamaForCausalLM(config).eval()


def linear_names(model) -> list[str]:
    return [name for name, m in model.named_modules() if type(m).__name__ == "Linear"]


def plan_of(conversion, model) -> dict:
    """(module, target, mode) -> the compared settings, from compiling the converted text."""
    plan = dc.parse(conversion.rules_text(), "converted.rules").compile(model).plan
    found = {}
    for entry in plan.entries:
        target = "_input_" if entry.target.startswith("_input_") else entry.target
        target = "_output_" if target.startswith("_output_") else target
        found[(entry.module, target, entry.mode)] = normalised(entry.mode, entry.setting)
    return found


def quant(dtype: str, scheme: str, granularity) -> dict:
    return normalised(
        Mode.QUANTIZE,
        {"quant_dtype": dtype, "quant_scheme": scheme, "granularity": granularity},
    )


def codes(conversion) -> list[str]:
    return [n.code for n in conversion.notes]
