"""Quantization presets: the named schemes `scheme=W4A16` stands for, and their expansion into
the key table's own keys (quant_dtype, quant_scheme, granularity)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsl_compress.diagnostics import did_you_mean, error
from dsl_compress.schema.checks import KeyRule


@dataclass(frozen=True)
class Preset:
    """A named scheme: the settings it stands for (NNI keys, .rules spelling of values), or why
    NNI 3.0 cannot express it and what to write instead."""

    name: str
    settings: tuple[tuple[str, Any], ...] = ()
    meaning: str = ""
    inexpressible: str | None = None
    instead: str | None = None

    def expansion(self) -> str:
        """``scheme=W4A16 → quant_dtype=int4 quant_scheme=symmetric granularity=[1, 128]``."""
        keys = " ".join(f"{key}={_shown(value)}" for key, value in self.settings)
        return f"scheme={self.name} → {keys}"


def _shown(value: Any) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


# The presets llm-compressor (compressed-tensors) names, as far as NNI 3.0 can hold them: weights
# only, static scales, with the meaning compressed-tensors gives them today, so that a recipe's
# `scheme: W8A16` and the language's `scheme=W8A16` (and `convert`'s output) agree. W8A16 is
# int8 in groups of 128 inputs: compressed-tensors' W8A16 was per channel up to 0.15.x and is
# group 128 from 0.16.0 on. Write granularity=out_channel beside scheme=W8A16 for the old one.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "W4A16",
            (("quant_dtype", "int4"), ("quant_scheme", "symmetric"), ("granularity", [1, 128])),
            "int4 symmetric weights in groups of 128 inputs, activations left as they are",
        ),
        Preset(
            "W4A16_ASYM",
            (("quant_dtype", "uint4"), ("quant_scheme", "affine"), ("granularity", [1, 128])),
            "uint4 affine (zero point) weights in groups of 128 inputs",
        ),
        Preset(
            "W8A16",
            (("quant_dtype", "int8"), ("quant_scheme", "symmetric"), ("granularity", [1, 128])),
            "int8 symmetric weights in groups of 128 inputs (compressed-tensors >= 0.16)",
        ),
        Preset(
            "W8A8",
            meaning="int8 weights per channel and int8 activations per token, scaled at run time",
            inexpressible="its activations are quantized dynamically, per token, at run time; "
            "NNI 3.0 (and so dsl-compress) scales activations statically from calibration",
            instead="quantize the weights per channel (quant_dtype=int8 granularity=out_channel) "
            "and the inputs statically in a statement of their own: quantize Linear._input_ "
            "quant_dtype=int8 quant_scheme=symmetric granularity=default",
        ),
    )
}
"""Every preset by name."""


def _check_scheme(key: str, value: Any, subject: str) -> list:
    if not isinstance(value, str) or value not in PRESETS:
        shown = f"{value!r}" if isinstance(value, str) else f"{type(value).__name__} {value!r}"
        hint = did_you_mean(str(value), PRESETS) or f"use one of {', '.join(PRESETS)}"
        return [error("C105", f"{key} {shown} is no preset", subject=subject, hint=hint)]
    preset = PRESETS[value]
    if preset.inexpressible is None:
        return []
    message = f"{key}={value} ({preset.meaning}) cannot be expressed: {preset.inexpressible}"
    return [error("K121", message, subject=subject, hint=preset.instead)]


SCHEME_RULE = KeyRule(f"one of {', '.join(PRESETS)}", _check_scheme, tuple(PRESETS))


def expand_scheme(name: str, given: Any) -> dict[str, Any]:
    """The keys ``scheme=name`` sets that ``given`` (the keys written beside it) does not:
    a key written beside the scheme overrides the preset's."""
    preset = PRESETS.get(name)
    if preset is None or preset.inexpressible is not None:
        return {}
    return {key: value for key, value in preset.settings if key not in given}
