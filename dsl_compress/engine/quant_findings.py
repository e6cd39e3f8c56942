"""Warnings about the data behind a scale: non-finite values (Q604) and scales at their floor (Q605)."""

from __future__ import annotations

import torch

from dsl_compress.diagnostics import Diagnostic, warning
from dsl_compress.engine.quant_math import SCALE_FLOOR


def nonfinite_warning(
    name: str, subject: str, count: int, total: int, observed: bool
) -> Diagnostic:
    """Q604: ``count`` of ``total`` values of a weight (or of the calibration batches seen by an
    activation, ``observed``) were NaN or infinite; the scale comes from the finite ones."""
    where = "in the calibration batches" if observed else "in the tensor"
    hint = (
        "check the calibration batches (a NaN in a batch, or a model that overflows in "
        "this dtype)"
        if observed
        else "load the right weights; a NaN weight is NaN before and after quantization"
    )
    return warning(
        "Q604",
        f"'{name}' has {count} non-finite value(s) (NaN or inf) of {total} {where}: its scale "
        "comes from the finite ones; NaN stays NaN and inf saturates when quantized",
        subject=subject,
        hint=hint,
    )


def floor_warning(
    name: str, subject: str, lo: torch.Tensor, hi: torch.Tensor, scale: torch.Tensor
) -> Diagnostic | None:
    """Q605 when some block holds non-zero values but its scale sits at the floor (float32 eps):
    the values are too small to resolve, and below half the floor they all quantize to 0.
    An all-zero block (a zero bias) loses nothing and is not reported."""
    reach = torch.maximum(lo.abs(), hi.abs()).to(scale.device)
    degenerate = (scale <= SCALE_FLOOR) & (reach > 0)
    count = int(degenerate.sum())
    if count == 0:
        return None
    largest = float(reach[degenerate].max())
    steps = round(largest / SCALE_FLOOR)
    blocks = "" if scale.numel() == 1 else f" in {count} of {scale.numel()} blocks"
    outcome = "they all quantize to 0" if steps == 0 else f"they use at most {steps} steps"
    return warning(
        "Q605",
        f"the scale of '{name}' sits at its floor (float32 eps, {SCALE_FLOOR:.3g}){blocks}: "
        f"its values reach only {largest:.3g}, so {outcome}",
        subject=subject,
        hint="calibrate with representative batches, rescale the values (a normalization "
        "before the module), or leave the target out of quantization",
    )
