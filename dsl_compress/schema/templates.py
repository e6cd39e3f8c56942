"""The built-in settings templates per module type, exactly as NNI 3.0 ships them."""

from __future__ import annotations

from typing import Any

from dsl_compress.vocab import Mode

Template = dict[str, dict[str, Any]]


def pruning_weight_template() -> dict[str, Any]:
    return {
        "sparse_ratio": None,
        "max_sparse_ratio": None,
        "min_sparse_ratio": None,
        "sparse_threshold": None,
        "global_group_id": None,
        "dependency_group_id": None,
        "granularity": "default",
        "internal_metric_block": None,
        "apply_method": "mul",
    }


def pruning_bias_template() -> dict[str, Any]:
    return {
        "align": {"module_name": None, "target_name": "weight", "dims": [0]},
        "apply_method": "mul",
    }


def quant_target_template() -> dict[str, Any]:
    return {
        "quant_dtype": None,
        "quant_scheme": None,
        "granularity": "default",
        "apply_method": "clamp_round",
    }


def distill_template() -> Template:
    """The template every module type gets for distillation: its output only."""
    return {"_output_": {"lambda": None, "link": None, "apply_method": None}}


_WEIGHTED = (
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
)
_PRUNE_WITH_BIAS = _WEIGHTED + ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
_QUANT_WITH_WEIGHT = _WEIGHTED + ("BatchNorm1d", "BatchNorm2d")
_QUANT_ACTIVATIONS = ("ReLU", "ReLU6", "Hardtanh", "MaxPool2d")


def builtin_templates(mode: Mode) -> dict[str, Template]:
    """Fresh copies of NNI 3.0's registry for one mode (distillation's is empty)."""
    if mode is Mode.PRUNE:
        table = {
            name: {"weight": pruning_weight_template(), "bias": pruning_bias_template()}
            for name in _PRUNE_WITH_BIAS
        }
        table["Embedding"] = {"weight": pruning_weight_template()}
        return table
    if mode is Mode.QUANTIZE:
        full = ("_input_", "weight", "bias", "_output_")
        table = {name: {t: quant_target_template() for t in full} for name in _QUANT_WITH_WEIGHT}
        for name in _QUANT_ACTIVATIONS:
            table[name] = {t: quant_target_template() for t in ("_input_", "_output_")}
        return table
    return {}
