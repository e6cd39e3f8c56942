"""The per-forward fake-quant paths (prepared steps, slices of a large tensor) give NNI's
formula bit for bit: compared as bit patterns, so +0.0 and -0.0 (which ``torch.equal``
calls equal) and NaN payloads count."""

from __future__ import annotations

import pytest
import torch

from dsl_compress.engine.quant_math import broadcast_blocks, fake_quantize, scale_zero_point
from dsl_compress.engine.quant_steps import _CHUNK, _CHUNK_FROM, compute_dtype, prepare_steps
from dsl_compress.engine.quantize import QuantParams
from dsl_compress.engine.quant_dtypes import quant_range
from dsl_compress.engine.transforms import TargetTransform
from dsl_compress.schema.granularity import parse_granularity

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
BITS = {
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}
SETTINGS = [
    ("int8", "symmetric", None),
    ("int8", "affine", None),
    ("uint8", "symmetric", None),
    ("int4", "affine", None),
    ("int8", "symmetric", "out_channel"),
    ("uint8", "affine", "out_channel"),
]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(BITS[t.dtype])


def assert_bits(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert torch.equal(bits(actual), bits(expected))


def reference(x, scale, zp, qrange, kernel):
    """NNI's expression, out of place, in the compute dtype; the result in x's dtype."""
    scale, zp = (broadcast_blocks(t, x, kernel, "tensor") for t in (scale, zp))
    y = x.to(compute_dtype(x.dtype))
    q = torch.round(torch.clamp(y / scale + zp, qrange.qmin, qrange.qmax))
    return ((q - zp) * scale).to(x.dtype)


def tricky(shape, dtype, seed=0):
    """Random values with signed zeros, ties of the scale below, tiny values and NaN."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * 3
    flat = x.view(-1)
    specials = [0.0, -0.0, 1e-30, -1e-30, 0.25, -0.25, 0.75, -0.75, float("nan"), 1e6, -1e6]
    for i, value in enumerate(specials[: flat.numel()]):
        flat[(i * 7919) % flat.numel()] = value
    return x.to(dtype)


def params_for(x, quant_dtype, scheme, granularity):
    kernel = parse_granularity(granularity) if granularity else None
    qrange = quant_range(quant_dtype)
    finite = torch.nan_to_num(x.float(), nan=0.0)
    if kernel is None:
        lo, hi = torch.aminmax(finite)
    else:
        lo = kernel.shrink(finite, lambda t, d: torch.amin(t, dim=d))
        hi = kernel.shrink(finite, lambda t, d: torch.amax(t, dim=d))
    scale, zp = scale_zero_point(lo, hi, qrange, scheme)
    return QuantParams(scale, zp, qrange, scheme, kernel)


def prepared(x, quant):
    scale, zp = (
        broadcast_blocks(t, x, quant.kernel, "tensor") for t in (quant.scale, quant.zero_point)
    )
    return prepare_steps(x, scale, zp, quant.qrange.qmin, quant.qrange.qmax)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("quant_dtype, scheme, granularity", SETTINGS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (3, 5, 17), (33, 1000)])
def test_prepared_steps_are_the_formula_bit_for_bit(dtype, quant_dtype, scheme, granularity, shape):
    x = tricky(shape, dtype)
    quant = params_for(x, quant_dtype, scheme, granularity)
    steps = prepared(x, quant)
    expected = reference(x, quant.scale, quant.zero_point, quant.qrange, quant.kernel)
    assert_bits(steps.apply(x), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rounding_ties_land_where_the_formula_puts_them(dtype):
    """Every half step between codes (and the codes) of a scale a power of two holds exactly."""
    scale, zp = torch.tensor(0.25), torch.tensor(0.0)
    qrange = quant_range("int8")
    x = (torch.arange(-300, 301, dtype=torch.float64) * 0.125).to(dtype)
    steps = prepare_steps(x, scale, zp, qrange.qmin, qrange.qmax)
    assert_bits(steps.apply(x), reference(x, scale, zp, qrange, None))
    assert_bits(steps.apply(-x), reference(-x, scale, zp, qrange, None))


def test_signed_zero_points_give_the_signed_zeros_of_the_formula():
    """r - (-0.0) turns -0.0 into +0.0; r + (+0.0) turns -0.0 into +0.0 too."""
    x = torch.tensor([-0.0, 0.0, -0.1, 0.1, -3.0])
    scale, qrange = torch.tensor(0.5), quant_range("int8")
    for zp in (0.0, -0.0, 2.0):
        zero_point = torch.tensor(zp)
        steps = prepare_steps(x, scale, zero_point, qrange.qmin, qrange.qmax)
        assert_bits(steps.apply(x), reference(x, scale, zero_point, qrange, None))


def test_a_zero_point_of_another_kind_is_not_prepared():
    x = torch.randn(4, 6)
    assert (
        prepare_steps(x, torch.tensor(0.1), torch.tensor(0.0, dtype=torch.float64), -127, 127)
        is None
    )
    assert prepare_steps(x, torch.full((4, 1), 0.1), torch.tensor(0.0), -127, 127) is None


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("numel", [_CHUNK_FROM, _CHUNK_FROM + 1, _CHUNK_FROM + 3 * _CHUNK // 2 + 7])
@pytest.mark.parametrize("quant_dtype, scheme", [("int8", "symmetric"), ("uint8", "affine")])
def test_large_tensors_in_slices_are_the_formula_bit_for_bit(dtype, numel, quant_dtype, scheme):
    x = tricky((numel,), dtype, seed=numel)
    quant = params_for(x, quant_dtype, scheme, None)
    expected = reference(x, quant.scale, quant.zero_point, quant.qrange, None)
    assert_bits(fake_quantize(x, quant.scale, quant.zero_point, quant.qrange), expected)
    assert_bits(prepared(x, quant).apply(x), expected)


def tap(quant, fused=False):
    return TargetTransform(quant=quant, fused=fused)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("fused", [False, True])
def test_a_tap_follows_its_scale_and_the_input_shape(dtype, fused):
    x = tricky((6, 10), dtype)
    quant = params_for(x, "int8", "affine", "per_channel")
    transform = tap(quant, fused)
    with torch.no_grad():
        assert_bits(
            transform(x), reference(x, quant.scale, quant.zero_point, quant.qrange, quant.kernel)
        )
        transform.scale.mul_(1.5)
        transform.zero_point.fill_(0.0)
        wider = tricky((9, 10), dtype, seed=3)
        expected = reference(
            wider, transform.scale, transform.zero_point, quant.qrange, quant.kernel
        )
        assert_bits(transform(wider), expected)


def test_a_tap_with_a_graph_is_the_formula_and_straight_through():
    x = tricky((5, 9), torch.float32).nan_to_num().requires_grad_(True)
    quant = params_for(x.detach(), "int8", "symmetric", None)
    out = tap(quant)(x)
    assert out.grad_fn is not None
    assert_bits(
        out.detach(), reference(x.detach(), quant.scale, quant.zero_point, quant.qrange, None)
    )
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
