"""One quantized module's tensors in the compressed-tensors layout: planned from shapes alone, and
made from the engine's integer codes, scale and zero point."""

from __future__ import annotations

import math

import torch

from dsl_compress.deploy.ct_args import PACK_QUANTIZED, ModuleScheme, QuantArgs
from dsl_compress.deploy.ct_pack import pack_columns, pack_rows, packed_columns

Planned = tuple[str, tuple[int, ...], torch.dtype]


def planned_weight(
    scheme: ModuleScheme, shape: tuple[int, ...], dtype: torch.dtype
) -> list[Planned]:
    """The tensors a quantized weight of ``shape`` and ``dtype`` becomes (names relative to its
    module), in the order they are written."""
    args = scheme.weights
    scale = ("weight_scale", args.scale_shape(shape), dtype)
    if scheme.format != PACK_QUANTIZED:
        found = [("weight", tuple(shape), torch.int8), scale]
        return found + ([] if args.symmetric else [("weight_zero_point", scale[1], torch.int8)])
    packed = ("weight_packed", (shape[0], packed_columns(shape[1], args.num_bits)), torch.int32)
    found = [packed, scale, ("weight_shape", (2,), torch.int64)]
    return found + _planned_packed_zero_point(args, scale[1])


def _planned_packed_zero_point(args: QuantArgs, scale_shape: tuple[int, ...]) -> list[Planned]:
    if args.symmetric:
        return []
    if not args.packs_zero_point:
        return [("weight_zero_point", scale_shape, torch.int8)]
    rows = math.ceil(scale_shape[0] * args.num_bits / 32)
    return [("weight_zero_point", (rows, scale_shape[1]), torch.int32)]


def planned_input(args: QuantArgs, dtype: torch.dtype) -> list[Planned]:
    """The tensors of a statically quantized input (per tensor), scales in the weight's dtype."""
    found = [("input_scale", (1,), dtype)]
    return found if args.symmetric else found + [("input_zero_point", (1,), torch.int8)]


def weight_tensors(
    scheme: ModuleScheme,
    codes: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    qmin: int,
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """A quantized weight's tensors from its integer codes (in its quant_dtype's range, from
    ``qmin``) and scale and zero point (in the engine's block shape), scales in ``dtype``."""
    args = scheme.weights
    shape = tuple(codes.shape)
    shift = _shift(args, qmin)
    scale_shape = args.scale_shape(shape)
    signed_zero = _signed_zero_point(zero_point, shift, args).reshape(scale_shape)
    found = {"weight_scale": _scale(scale, scale_shape, dtype)}
    signed = codes - shift
    if scheme.format != PACK_QUANTIZED:
        found = {"weight": signed.to(torch.int8), **found}
    else:
        packed = pack_rows(signed, args.num_bits)
        found = {"weight_packed": packed, **found, "weight_shape": torch.tensor(shape)}
    if args.symmetric:
        return found
    if scheme.format == PACK_QUANTIZED and args.packs_zero_point:
        found["weight_zero_point"] = pack_columns(signed_zero.to(torch.int16), args.num_bits)
    else:
        found["weight_zero_point"] = signed_zero.to(torch.int8)
    return found


def input_tensors(
    args: QuantArgs, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """A statically quantized input's scale (in the weight's ``dtype``) and zero point."""
    found = {"input_scale": _scale(scale, (1,), dtype)}
    signed = _signed_zero_point(zero_point, _shift(args, qmin), args)  # checked if symmetric
    if args.symmetric:
        return found
    return {**found, "input_zero_point": signed.reshape(1).to(torch.int8)}


def _shift(args: QuantArgs, qmin: int) -> int:
    """What turns a code of a range starting at ``qmin`` into compressed-tensors' signed one:
    0 for intB (NNI's narrow ``[-(2^(B-1)-1), 2^(B-1)-1]`` lies inside the signed range),
    2^(B-1) for uintB (the same scale, the zero point moved with the codes)."""
    return 0 if qmin < 0 else 1 << (args.num_bits - 1)


def _signed_zero_point(zero_point: torch.Tensor, shift: int, args: QuantArgs) -> torch.Tensor:
    signed = torch.round(zero_point).to(torch.int16) - shift
    if args.symmetric and bool(signed.ne(0).any()):
        raise ValueError("a symmetric quantizer's zero point is not the middle of its range")
    return signed


def _scale(scale: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The scale in the layout's shape and the weight's dtype; the engine rounded it to that
    dtype before using it (StreamRun's scales_like_weights), so the cast is exact."""
    cast = scale.reshape(shape).to(dtype)
    if not torch.equal(cast.to(scale.dtype), scale.reshape(shape)):
        raise ValueError(f"a scale is not a value of {dtype}; it was not rounded before use")
    return cast
