"""Simulated-quantization numerics: quant_dtype ranges, scale/zero-point and fake quantization."""

from __future__ import annotations

import math

import torch

from dsl_compress.diagnostics import did_you_mean, fail
from dsl_compress.engine.quant_dtypes import QuantRange, quant_range
from dsl_compress.engine.quant_steps import clamp_round, compute_dtype
from dsl_compress.schema.granularity import BlockKernel
from dsl_compress.vocab import QUANT_DTYPES, QUANT_SCHEMES

# The quant_dtype ranges live torch-free in quant_dtypes (lint checks them without torch);
# they are named here too, with the numerics that use them. The formula's steps are
# quant_steps'.
__all__ = [
    "QUANT_DTYPES",
    "QUANT_SCHEMES",
    "QuantRange",
    "quant_range",
    "scale_zero_point",
    "fake_quantize",
    "fused_fake_quantize",
    "quant_codes",
]

# The smallest scale: float32 eps, as NNI floors it.
SCALE_FLOOR = torch.finfo(torch.float32).eps


def scale_zero_point(
    min_v: torch.Tensor,
    max_v: torch.Tensor,
    qrange: QuantRange,
    scheme: str | None,
    subject: str = "tensor",
    scale_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point from observed min/max, elementwise over any (block) shape.

    The range is widened to include 0. ``symmetric`` (and None) uses
    ``max(|lo|, |hi|) / ((qmax - qmin) / 2)`` with zero point ``floor((qmax + qmin + 1) / 2)``;
    ``affine`` uses ``(hi - lo) / (qmax - qmin)`` with zero point ``qmin - round(lo / scale)``.
    The scale is floored at float32 eps and the zero point, a float tensor, clamped to
    ``[qmin, qmax]``. With ``scale_dtype`` the floored scale is rounded to that dtype (and
    kept in its own) before the zero point is taken from it: a file format that stores
    scales in the weight's dtype (compressed-tensors) then holds exactly the scale used.
    """
    lo, hi = _as_stats(min_v), _as_stats(max_v)
    lo = torch.clamp_max(lo, 0.0)
    hi = torch.clamp_min(hi, 0.0)
    qmin, qmax = qrange.qmin, qrange.qmax
    if scheme is None or scheme == "symmetric":
        scale = torch.maximum(lo.abs(), hi.abs()) / (float(qmax - qmin) / 2)
        scale = _rounded(torch.clamp_min(scale, SCALE_FLOOR), scale_dtype)
        zero_point = torch.full_like(scale, float((qmax + qmin + 1) // 2))
    elif scheme == "affine":
        scale = torch.clamp_min((hi - lo) / float(qmax - qmin), SCALE_FLOOR)
        scale = _rounded(scale, scale_dtype)
        zero_point = qmin - torch.round(lo / scale)
    else:
        fail(
            "C105",
            f"quant_scheme {scheme!r} is not 'symmetric', 'affine' or None",
            subject=subject,
            hint=did_you_mean(str(scheme), QUANT_SCHEMES),
        )
    return scale, torch.clamp(zero_point, qmin, qmax)


def _rounded(scale: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``scale`` rounded to ``dtype`` (to nearest), in its own dtype; unchanged without one."""
    return scale if dtype is None else scale.to(dtype).to(scale.dtype)


def _as_stats(value: torch.Tensor | float) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    return tensor if tensor.is_floating_point() else tensor.to(torch.float32)


def quant_codes(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    qrange: QuantRange,
    kernel: BlockKernel | None = None,
    subject: str = "tensor",
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """The integer codes :func:`fake_quantize` dequantizes, ``round(clamp(x / scale + zp,
    qmin, qmax))`` as int16 in ``[qmin, qmax]``: the same steps in the same dtype, so
    ``((codes - zp) * scale).to(x.dtype)`` is ``fake_quantize(x, ...)`` bit for bit. Where
    the bool ``keep`` is False the code is the zero point, which dequantizes to 0."""
    scale = broadcast_blocks(scale, x, kernel, subject)
    zero_point = broadcast_blocks(zero_point, x, kernel, subject)
    work = compute_dtype(x.dtype)
    y = torch.div(x, scale) if x.dtype == work else x.to(work).div_(scale)
    y = y.add_(zero_point).clamp_(qrange.qmin, qrange.qmax).round_()
    if keep is not None:
        y = torch.where(keep, y, zero_point.to(y.dtype))
    return y.to(torch.int16)


class _ClampRound(torch.autograd.Function):
    """NNI's clamp_round: quantize-dequantize forward, straight-through backward everywhere."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):  # type: ignore[override]
        return clamp_round(x, scale, zero_point, qmin, qmax)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, None, None, None, None


def fake_quantize(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    qrange: QuantRange,
    kernel: BlockKernel | None = None,
    subject: str = "tensor",
) -> torch.Tensor:
    """``(round(clamp(x / scale + zp, qmin, qmax)) - zp) * scale``, exactly as NNI computes it.

    Clamping comes before rounding and ``torch.round`` rounds half to even. ``scale`` and
    ``zero_point`` are 0-d (kernel None) or in the kernel's block shape; blocks are
    broadcast over ``x``. The gradient is a pure straight-through estimator: the incoming
    gradient reaches ``x`` unchanged, clamped elements included, so a quantized model
    can be fine-tuned. ``scale`` and ``zero_point`` get no gradient.
    """
    scale = broadcast_blocks(scale, x, kernel, subject)
    zero_point = broadcast_blocks(zero_point, x, kernel, subject)
    if torch.is_grad_enabled() and x.requires_grad:
        return _ClampRound.apply(x, scale, zero_point, qrange.qmin, qrange.qmax)
    return clamp_round(x, scale, zero_point, qrange.qmin, qrange.qmax)


def broadcast_blocks(
    blocks: torch.Tensor, x: torch.Tensor, kernel: BlockKernel | None, subject: str
) -> torch.Tensor:
    """Per-block values in a shape that broadcasts against ``x``."""
    if kernel is None:
        return blocks
    shape = kernel.block_shape(x.shape, subject)
    if blocks.numel() != math.prod(shape):
        fail(
            "P501",
            f"{blocks.numel()} quantization blocks do not fit a tensor of shape "
            f"{list(x.shape)}, which has block shape {list(shape)}",
            subject=subject,
            hint="a granularity that blocks the batch dim needs the calibration batch size",
        )
    return kernel.expand(blocks, x.shape, full=False)


class _FusedStraightThrough(torch.autograd.Function):
    """Carries a precomputed fake-quantized value forward and the gradient straight back.

    ``x + (fq - x).detach()`` would also give the gradient but not ``fq`` bit for bit.
    """

    @staticmethod
    def forward(ctx, x, quantized):  # type: ignore[override]
        return quantized

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, None


def fused_fake_quantize(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    qrange: QuantRange,
    kernel: BlockKernel | None = None,
    subject: str = "tensor",
    int_zero_point: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fake quantization through torch's fused kernels where they apply, else :func:`fake_quantize`.

    Per-tensor settings use ``torch.fake_quantize_per_tensor_affine``; a kernel with exactly
    one dim split into blocks of 1 uses ``torch.fake_quantize_per_channel_affine``. Both
    compute ``round(x * (1 / scale)) + zp`` rather than NNI's ``round(x / scale + zp)``, so
    at and near rounding ties (about two elements per million of random normal data) they
    land one quantization step away from NNI. That is why :func:`fake_quantize` is the
    default. They take fp32, fp16 and bf16 (computing in float32, the result in ``x``'s
    dtype); float64 and a zero point that is not integral fall back. ``int_zero_point`` is the
    zero point as int32 (:func:`integer_zero_point`) when the caller keeps it, which spares
    reading the zero point on every call (a device sync on a GPU).
    The gradient is straight-through everywhere, as in NNI (the fused ops' own gradient
    would be zero at clamped elements).
    """
    if int_zero_point is None:
        int_zero_point = integer_zero_point(zero_point)
    axis = None if int_zero_point is None else _fused_axis(x, scale, kernel, subject)
    if axis is None:
        return fake_quantize(x, scale, zero_point, qrange, kernel, subject)
    with torch.no_grad():
        quantized = _fused(x.detach(), scale, int_zero_point, qrange, axis)
    return _FusedStraightThrough.apply(x, quantized)


def fused_kernels_pay_off(device: torch.device) -> bool:
    """Whether ``fused=True`` runs torch's fused kernels on ``device``: on CPU they are scalar
    loops, several times slower than the exact formula's vectorized steps, so ``fused=True``
    computes the exact formula there; elsewhere one kernel replaces six."""
    return device.type != "cpu"


def integer_zero_point(zero_point: torch.Tensor) -> torch.Tensor | None:
    """The zero point as int32 for torch's fused kernels, or None when it holds a non-integer."""
    if not bool(torch.equal(zero_point, torch.round(zero_point))):
        return None
    return zero_point.to(torch.int32)


def _fused(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qrange: QuantRange, axis: int
) -> torch.Tensor:
    scale = scale.to(device=x.device, dtype=torch.float32)
    zp = zero_point.to(device=x.device)
    if axis < 0:
        return torch.fake_quantize_per_tensor_affine(
            x, scale.reshape(()), zp.reshape(()), qrange.qmin, qrange.qmax
        )
    return torch.fake_quantize_per_channel_affine(
        x, scale.reshape(-1), zp.reshape(-1), axis, qrange.qmin, qrange.qmax
    )


# The fused kernels compute in float32 (1 / scale included): the compute dtype of these, but
# not of float64, whose exact formula runs in float64.
_FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _fused_axis(
    x: torch.Tensor, scale: torch.Tensor, kernel: BlockKernel | None, subject: str
) -> int | None:
    """-1 for per-tensor, the channel dim for per-channel, None when no fused op matches."""
    if x.dtype not in _FUSED_DTYPES:
        return None
    if kernel is None:
        return -1 if scale.numel() == 1 else None
    blocks = kernel.block_shape(x.shape, subject)
    split = [dim for dim, count in enumerate(blocks) if count > 1]
    if not split:
        return -1 if scale.numel() == 1 else None
    if len(split) == 1 and blocks[split[0]] == x.shape[split[0]] == scale.numel():
        return split[0]
    return None
