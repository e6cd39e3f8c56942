"""Tiny models and helpers shared by the converter tests: a Llama built from a config, and
each tensor's compared settings in the plan a conversion's rules compile to."""

from __future__ import annotations

import dsl_compress as dc
from hf_models import build_llama
from dsl_compress.tools.convert.selection_check import normalised
from dsl_compress.vocab import Mode


def tiny_llama():
    return build_llama(hidden_size=32, intermediate_size=64, tie_word_embeddings=False)


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
