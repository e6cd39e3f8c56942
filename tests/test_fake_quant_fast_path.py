"""The in-place, chunked fake-quant formula gives NNI's out-of-place expression bit for bit."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_compress.schema.granularity import parse_granularity
from dsl_compress.engine.quant_math import fake_quantize, quant_range, scale_zero_point
from dsl_compress.engine.quant_steps import _CHUNK, compute_dtype


def nni_fake_quant(x, scale, zp, qmin, qmax):
    return (torch.round(torch.clamp(x / scale + zp, qmin, qmax)) - zp) * scale


def params(x, dtype="int8", scheme="affine", granularity=None):
    kernel = parse_granularity(granularity) if granularity else None
    qrange = quant_range(dtype)
    if kernel is None:
        lo, hi = torch.aminmax(x.float())
    else:
        lo = kernel.shrink(x.float(), lambda t, d: torch.amin(t, dim=d))
        hi = kernel.shrink(x.float(), lambda t, d: torch.amax(t, dim=d))
    scale, zp = scale_zero_point(lo, hi, qrange, scheme)
    return scale, zp, qrange, kernel


def reference(x, scale, zp, qrange, kernel):
    if kernel is not None:
        scale = kernel.expand(scale, x.shape, full=False)
        zp = kernel.expand(zp, x.shape, full=False)
    return nni_fake_quant(x, scale, zp, qrange.qmin, qrange.qmax)


def assert_bits(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("numel", [1, _CHUNK - 1, _CHUNK, _CHUNK + 1, 3 * _CHUNK + 17])
@pytest.mark.parametrize("dtype, scheme", [("int8", "affine"), ("uint8", "symmetric")])
def test_per_tensor_any_size_matches_nni(numel, dtype, scheme):
    x = torch.randn(numel, generator=torch.Generator().manual_seed(numel)) * 3
    scale, zp, qrange, kernel = params(x, dtype, scheme)
    assert_bits(fake_quantize(x, scale, zp, qrange), reference(x, scale, zp, qrange, kernel))


def test_rounding_ties_and_clamped_values_match_nni():
    scale, zp = torch.tensor(0.5), torch.tensor(-3.0)
    x = torch.arange(-200.0, 200.0, 0.25).repeat(2 * _CHUNK // 1600 + 1)
    qrange = quant_range("int8")
    assert_bits(fake_quantize(x, scale, zp, qrange), nni_fake_quant(x, scale, zp, -127, 127))


@pytest.mark.parametrize("tensor_dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("numel, granularity", [(2 * _CHUNK + 8, None), (96, "out_channel")])
def test_other_float_dtypes_are_nni_in_their_compute_dtype(tensor_dtype, numel, granularity):
    """fp16 and bf16 run the formula in float32 and keep their dtype; fp64 runs in fp64."""
    x = (torch.randn(numel) * 4).to(tensor_dtype).reshape(-1, 8)
    scale, zp, qrange, kernel = params(x, granularity=granularity)
    wide = x.to(compute_dtype(tensor_dtype))
    expected = reference(wide, scale, zp, qrange, kernel).to(tensor_dtype)
    assert_bits(fake_quantize(x, scale, zp, qrange, kernel), expected)


def test_bf16_rounds_x_over_scale_in_float32():
    """In bf16, x / scale = 100.6 would be stored as 100.5 before rounding (and round to 100)."""
    x = torch.tensor([1.0, -1.0], dtype=torch.bfloat16)
    scale, zp, qrange = torch.tensor(1 / 100.6), torch.tensor(0.0), quant_range("int8")
    assert (x / scale).tolist() == [100.5, -100.5]
    expected = (torch.tensor([101.0, -101.0]) * scale).to(torch.bfloat16)
    assert torch.equal(fake_quantize(x, scale, zp, qrange), expected)


def test_non_contiguous_and_per_channel_match_nni():
    x = torch.randn(512, 384).t()
    scale, zp, qrange, kernel = params(x)
    assert_bits(fake_quantize(x, scale, zp, qrange), reference(x, scale, zp, qrange, kernel))
    w = torch.randn(256, 1024)
    scale, zp, qrange, kernel = params(w, "int8", "symmetric", "out_channel")
    assert_bits(
        fake_quantize(w, scale, zp, qrange, kernel), reference(w, scale, zp, qrange, kernel)
    )


def test_zero_point_of_another_dtype_falls_back_to_the_expression():
    """The expression runs in the promoted dtype; the result keeps the tensor's dtype."""
    x = torch.randn(4, _CHUNK + 3)
    scale = torch.full((4, 1), 0.02)
    zp = torch.full((4, 1), 5.0, dtype=torch.float64)
    qrange = quant_range("int8")
    expected = nni_fake_quant(x, scale, zp, -127, 127).to(x.dtype)
    assert_bits(fake_quantize(x, scale, zp, qrange), expected)


def test_input_is_not_modified():
    x = torch.randn(2 * _CHUNK)
    before = x.clone()
    scale, zp, qrange, _ = params(x)
    fake_quantize(x, scale, zp, qrange)
    assert torch.equal(x, before)


def test_grad_path_matches_no_grad_path_and_is_straight_through():
    x = torch.randn(_CHUNK + 9, requires_grad=True)
    scale, zp, qrange, _ = params(x.detach())
    out = fake_quantize(x, scale, zp, qrange)
    with torch.no_grad():
        fast = fake_quantize(x, scale, zp, qrange)
    assert out.grad_fn is not None and fast.grad_fn is None
    assert torch.equal(out.detach(), fast)
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=64),
    scale=st.floats(2.0**-20, 100.0, width=32),
    zp=st.integers(-127, 127),
    repeat=st.integers(1, 2 * _CHUNK // 64 + 1),
)
def test_any_values_match_nni(values, scale, zp, repeat):
    x = torch.tensor(values, dtype=torch.float32).repeat(repeat)
    s, z = torch.tensor(scale), torch.tensor(float(zp))
    qrange = quant_range("int8")
    assert_bits(fake_quantize(x, s, z, qrange), nni_fake_quant(x, s, z, -127, 127))


def test_a_scale_of_higher_rank_broadcasts_as_in_nni():
    x = torch.randn(_CHUNK + 1)
    scale, zp = torch.full((1, 1), 0.03), torch.full((1, 1), -2.0)
    qrange = quant_range("int8")
    assert_bits(fake_quantize(x, scale, zp, qrange), nni_fake_quant(x, scale, zp, -127, 127))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("shape", [(1, 1), (1,), ()])
def test_a_kept_dims_scale_goes_through_the_chunks_without_resizing(shape):
    x = torch.randn(4 * _CHUNK // 256, 256)
    scale, zp = torch.full(shape, 0.02), torch.full(shape, 3.0)
    expected = nni_fake_quant(x, scale, zp, -127, 127)
    assert_bits(fake_quantize(x, scale, zp, quant_range("int8")), expected)
