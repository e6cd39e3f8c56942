"""Quantization numerics against the NNI 3.0 reference values (nni-semantics.md sections 5.1-5.3)."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from dsl_compress.diagnostics import CompressionError
from dsl_compress.schema.granularity import BlockKernel, parse_granularity
from dsl_compress.engine.quantize import MinMaxObserver, weight_min_max
from dsl_compress.engine.quant_math import (
    QUANT_DTYPES,
    QuantRange,
    fake_quantize,
    fused_fake_quantize,
    quant_range,
    scale_zero_point,
)

WEIGHT = [[1.0, -2.0, 0.5], [4.0, 0.25, -1.0]]
F32 = torch.float32


def f32(value) -> torch.Tensor:
    return torch.tensor(value, dtype=F32)


def nni_formula(x, scale, zp, qmin, qmax):
    """The forward of NNI's clamp_round as section 5.3 writes it, spelled independently."""
    q = torch.round(torch.clamp(zp + x / scale, qmin, qmax))
    return (q - zp) * scale


# quant_dtype ranges (5.1)

RANGES = {
    **{f"int{b}": (-(2 ** (b - 1)) + 1, 2 ** (b - 1) - 1) for b in range(2, 9)},
    **{f"uint{b}": (0, 2**b - 1) for b in range(2, 9)},
}


@pytest.mark.parametrize("dtype", sorted(RANGES))
def test_range_of_every_dtype(dtype):
    assert quant_range(dtype, "w") == QuantRange(*RANGES[dtype], dtype)
    assert quant_range(dtype, "w").bits == int(dtype.removeprefix("u").removeprefix("int"))


def test_known_ranges_and_none_means_int8():
    assert (quant_range("int8").qmin, quant_range("int8").qmax) == (-127, 127)
    assert (quant_range("int4").qmin, quant_range("int4").qmax) == (-7, 7)
    assert (quant_range("int2").qmin, quant_range("int2").qmax) == (-1, 1)
    assert (quant_range("uint8").qmin, quant_range("uint8").qmax) == (0, 255)
    assert quant_range(None, "w") == QuantRange(-127, 127, "int8")
    assert set(QUANT_DTYPES) == set(RANGES)


@pytest.mark.parametrize(
    "value, suggestion",
    [
        ("int9", None),
        ("int1", None),
        ("float16", None),
        ("int", None),
        ("INT8", "'int8'"),
        (8, "'int8'"),
        (True, None),
        ("int16", None),
    ],
)
def test_unsupported_dtype_is_c106(value, suggestion):
    with pytest.raises(CompressionError) as info:
        quant_range(value, "fc1.weight")
    (diag,) = info.value.diagnostics
    assert diag.code == "C106"
    assert repr(value) in diag.message and "fc1.weight" in diag.message
    assert diag.subject == "fc1.weight"
    assert "int2..int8" in diag.hint and "uint2..uint8" in diag.hint
    if suggestion:
        assert f"did you mean {suggestion}" in diag.hint
    assert "fc1.weight" in str(info.value) and "error[C106]" in str(info.value)


# scale and zero point (5.2): every row of the worked table

TABLE = [
    ("int8", "symmetric", None, f32(4.0) / 127, 0.0),
    ("int8", None, None, f32(4.0) / 127, 0.0),
    ("uint8", "symmetric", None, f32(4.0) / 127.5, 128.0),
    ("int8", "affine", None, f32(6.0) / 254, -42.0),
    ("uint8", "affine", None, f32(6.0) / 255, 85.0),
    ("int4", "affine", "out_channel", f32([[3.0], [5.0]]) / 14, [[2.0], [-4.0]]),
    ("int4", "symmetric", "in_channel", f32([[4.0, 2.0, 1.0]]) / 7, [[0.0, 0.0, 0.0]]),
]


@pytest.mark.parametrize("dtype, scheme, granularity, scale, zp", TABLE)
def test_worked_table(dtype, scheme, granularity, scale, zp):
    lo, hi = weight_min_max(f32(WEIGHT), parse_granularity(granularity))
    got_scale, got_zp = scale_zero_point(lo, hi, quant_range(dtype, "w"), scheme)
    assert got_scale.dtype == F32 and got_zp.dtype == F32
    assert got_scale.shape == torch.Size(scale.shape)
    assert torch.equal(got_scale, scale)
    assert torch.equal(got_zp, f32(zp))


def test_worked_table_decimals():
    lo, hi = weight_min_max(f32(WEIGHT))
    scale, _ = scale_zero_point(lo, hi, quant_range("int8"), "affine")
    assert round(scale.item(), 6) == 0.023622
    rows, _ = scale_zero_point(
        *weight_min_max(f32(WEIGHT), parse_granularity("out_channel")),
        quant_range("int4"),
        "affine",
    )
    assert [round(v, 4) for v in rows.flatten().tolist()] == [0.2143, 0.3571]


def test_int2_affine_bias_rounds_half_to_even():
    lo, hi = weight_min_max(f32([0.1, -0.3]), parse_granularity(None))
    scale, zp = scale_zero_point(lo, hi, quant_range("int2"), "affine")
    assert torch.equal(scale, f32(0.4) / 2) and round(scale.item(), 6) == 0.2
    assert (lo / scale).item() == -1.5
    assert zp.item() == 1.0  # -1 - round(-1.5), and round(-1.5) is -2


def test_range_is_widened_to_include_zero():
    scale, zp = scale_zero_point(f32(1.0), f32(4.0), quant_range("uint8"), "affine")
    assert torch.equal(scale, f32(4.0) / 255) and zp.item() == 0.0
    scale, zp = scale_zero_point(f32(-4.0), f32(-1.0), quant_range("int8"), "symmetric")
    assert torch.equal(scale, f32(4.0) / 127) and zp.item() == 0.0


def test_scale_is_floored_at_eps_and_zero_point_clamped():
    eps = torch.finfo(F32).eps
    scale, zp = scale_zero_point(f32(0.0), f32(0.0), quant_range("int8"), "affine")
    assert scale.item() == eps and zp.item() == -127.0
    scale, zp = scale_zero_point(f32([0.0]), f32([0.0]), quant_range("uint4"), "symmetric")
    assert scale.tolist() == [eps] and zp.tolist() == [8.0]


def test_unknown_scheme_is_c105():
    with pytest.raises(CompressionError) as info:
        scale_zero_point(f32(-1.0), f32(1.0), quant_range("int8"), "afine", subject="fc1.weight")
    assert info.value.codes == ["C105"]
    assert "did you mean 'affine'" in info.value.diagnostics[0].hint


# fake quantization (5.3)


def test_forward_example():
    out = fake_quantize(f32(WEIGHT), f32(0.023622), f32(-42.0), quant_range("int8"))
    expected = f32([[0.9921, -2.0079, 0.4961], [3.9921, 0.2598, -0.9921]])
    assert torch.equal(torch.round(out * 1e4) / 1e4, torch.round(expected * 1e4) / 1e4)


@pytest.mark.parametrize("scale, zp", [(0.5, 10.0), (0.4, 5.0), (0.3, 15.0)])
def test_equals_nni_formula_bit_for_bit(scale, zp):
    x = torch.randn(64, 33, generator=torch.Generator().manual_seed(7)) * 60
    out = fake_quantize(x, f32(scale), f32(zp), quant_range("int8"))
    assert torch.equal(out, nni_formula(x, f32(scale), f32(zp), -127, 127))
    assert ((out / scale + zp).round() <= 127).all()


def test_rounds_half_to_even():
    x = f32([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5])
    out = fake_quantize(x, f32(1.0), f32(0.0), quant_range("int8"))
    assert out.tolist() == [0.0, 2.0, 2.0, 0.0, -2.0, -2.0, 4.0]


def test_clamps_to_range_before_rounding():
    x = f32([127.5, 128.4, 1e9, -127.5, -1e9, 126.5, float("inf")])
    out = fake_quantize(x, f32(1.0), f32(0.0), quant_range("int8"))
    assert out.tolist() == [127.0, 127.0, 127.0, -127.0, -127.0, 126.0, 127.0]
    out = fake_quantize(f32([-3.0, 9.0]), f32(0.5), f32(3.0), quant_range("uint2"))
    assert out.tolist() == [-1.5, 0.0]  # (0 - 3) * 0.5 and (3 - 3) * 0.5


def test_gradient_is_straight_through_everywhere():
    x = (torch.randn(5, 7, generator=torch.Generator().manual_seed(1)) * 10).requires_grad_()
    out = fake_quantize(x, f32(0.05), f32(3.0), quant_range("int4"))
    assert (out.detach().abs() < x.detach().abs()).any()  # some elements are clamped
    out.backward(torch.ones_like(out))
    assert torch.equal(x.grad, torch.ones_like(x))
    weights = torch.randn(5, 7)
    x.grad = None
    fake_quantize(x, f32(0.05), f32(3.0), quant_range("int4")).mul(weights).sum().backward()
    assert torch.equal(x.grad, weights)


def test_quantized_linear_can_be_fine_tuned():
    layer = torch.nn.Linear(3, 2)
    kernel = parse_granularity("out_channel")
    qrange = quant_range("int8")
    scale, zp = scale_zero_point(*weight_min_max(layer.weight, kernel), qrange, "affine")
    weight = fake_quantize(layer.weight, scale, zp, qrange, kernel)
    torch.nn.functional.linear(torch.ones(4, 3), weight, layer.bias).sum().backward()
    assert torch.equal(layer.weight.grad, torch.full((2, 3), 4.0))
    assert not scale.requires_grad and not zp.requires_grad


def test_block_granularity_2x2():
    kernel = parse_granularity([2, 2])
    w = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    lo, hi = weight_min_max(w, kernel)
    assert lo.shape == (2, 3)
    assert torch.equal(lo[1, 2], w[2:4, 4:6].min()) and torch.equal(hi[0, 1], w[0:2, 2:4].max())
    scale, zp = scale_zero_point(lo, hi, quant_range("int4"), "affine")
    assert scale.shape == zp.shape == (2, 3)
    full_scale = scale.repeat_interleave(2, 0).repeat_interleave(2, 1)
    full_zp = zp.repeat_interleave(2, 0).repeat_interleave(2, 1)
    out = fake_quantize(w, scale, zp, quant_range("int4"), kernel)
    assert torch.equal(out, nni_formula(w, full_scale, full_zp, -7, 7))


def test_per_tensor_and_per_channel_shapes():
    lo, hi = weight_min_max(torch.randn(4, 2, 3, 3))
    assert lo.shape == hi.shape == ()
    lo, _ = weight_min_max(torch.randn(4, 2, 3, 3), parse_granularity("out_channel"))
    assert lo.shape == (4, 1, 1, 1)
    lo, _ = weight_min_max(torch.randn(4, 2, 3, 3), parse_granularity("in_channel"))
    assert lo.shape == (1, 2, 1, 1)


def test_per_channel_activation_scale_broadcasts_over_any_batch():
    kernel = parse_granularity("per_channel")
    observer = MinMaxObserver(kernel, "conv._output_0")
    observer.observe(torch.randn(8, 3, 4, 4))
    scale, zp = scale_zero_point(observer.min_val, observer.max_val, quant_range("int8"), None)
    assert scale.shape == (1, 3, 1, 1)
    x = torch.randn(2, 3, 4, 4)
    out = fake_quantize(x, scale, zp, quant_range("int8"), kernel)
    assert torch.equal(out, nni_formula(x, scale, zp, -127, 127))


def test_block_count_mismatch_is_p501():
    kernel = BlockKernel((1, 1, -1))
    with pytest.raises(CompressionError) as info:
        fake_quantize(
            torch.randn(2, 3, 4),
            torch.ones(4, 3, 1),
            torch.zeros(4, 3, 1),
            quant_range("int8"),
            kernel,
            subject="attn._input_0",
        )
    assert info.value.codes == ["P501"]
    assert info.value.diagnostics[0].subject == "attn._input_0"


# observers (5.4 PTQ running min/max)


def test_running_min_max_over_three_batches_per_channel():
    gen = torch.Generator().manual_seed(11)
    batches = [torch.randn(b, 5, 3, 3, generator=gen) * (b + 1) for b in (2, 4, 3)]
    observer = MinMaxObserver(parse_granularity("per_channel"), "conv._input_0")
    assert not observer.observed
    observer.observe(batches[0])
    running_min, running_max = observer.min_val, observer.max_val
    for batch in batches[1:]:
        observer.observe(batch)
    every = torch.cat(batches)
    assert observer.observed
    assert observer.min_val is running_min and observer.max_val is running_max  # in place
    assert torch.equal(observer.min_val, every.amin(dim=(0, 2, 3), keepdim=True))
    assert torch.equal(observer.max_val, every.amax(dim=(0, 2, 3), keepdim=True))


def test_running_min_max_per_tensor_is_0d():
    observer = MinMaxObserver()
    for value in ([1.0, 2.0], [-3.0, 0.5], [0.0, 7.0]):
        observer.observe(f32(value))
    assert observer.min_val.shape == () and observer.min_val.item() == -3.0
    assert observer.max_val.item() == 7.0


def test_per_channel_on_sequence_activation_is_dim_1():
    observer = MinMaxObserver(parse_granularity("per_channel"))
    x = torch.randn(2, 5, 8)
    observer.observe(x)
    assert observer.min_val.shape == (1, 5, 1)
    assert torch.equal(observer.max_val, x.amax(dim=(0, 2), keepdim=True))


def test_observer_keeps_no_reference_and_no_grad():
    observer = MinMaxObserver(parse_granularity("per_channel"))
    x = torch.randn(4, 3, requires_grad=True)
    probe = weakref.ref(x)
    observer.observe(x * 2)
    observer.observe(x)
    del x
    gc.collect()
    assert probe() is None
    assert not observer.min_val.requires_grad and observer.min_val.grad_fn is None


def test_stats_are_float32_for_any_float_input():
    lo, hi = weight_min_max(torch.tensor([1.5, -2.25], dtype=torch.float64))
    assert lo.dtype == hi.dtype == F32 and (lo.item(), hi.item()) == (-2.25, 1.5)
    lo, _ = weight_min_max(torch.tensor([[1.0, -3.0]], dtype=torch.bfloat16), BlockKernel((1,)))
    assert lo.dtype == F32 and lo.tolist() == [[1.0, -3.0]]


def test_batch_dependent_blocks_need_one_batch_size():
    observer = MinMaxObserver(BlockKernel((1, 1, -1)), "attn._input_0")
    observer.observe(torch.randn(2, 3, 4))
    assert observer.min_val.shape == (2, 3, 1)
    with pytest.raises(CompressionError) as info:
        observer.observe(torch.randn(5, 3, 4))
    assert info.value.codes == ["P501"] and "[5, 3, 1]" in info.value.diagnostics[0].message


# fused path


def off_tie_data(scale: float, zp: float, shape, seed: int) -> torch.Tensor:
    """Values whose x / scale + zp sits at least 0.1 away from any rounding tie."""
    gen = torch.Generator().manual_seed(seed)
    steps = torch.randint(-150, 150, shape, generator=gen).to(F32)
    offsets = torch.rand(shape, generator=gen) * 0.8 - 0.4
    return (steps + offsets - zp) * scale


@pytest.mark.parametrize("dtype, scheme", [("int8", "affine"), ("uint8", "symmetric")])
def test_fused_per_tensor_equals_exact_off_ties(dtype, scheme):
    qrange = quant_range(dtype)
    x = off_tie_data(0.037, 0.0, (64, 64), seed=5)
    scale, zp = scale_zero_point(*weight_min_max(x), qrange, scheme)
    x = off_tie_data(scale.item(), zp.item(), (64, 64), seed=6)
    assert torch.equal(
        fused_fake_quantize(x, scale, zp, qrange), fake_quantize(x, scale, zp, qrange)
    )


def test_fused_per_channel_equals_exact_off_ties():
    kernel, qrange = parse_granularity("out_channel"), quant_range("int4")
    scale, zp = f32([[0.1], [0.25], [0.03]]), f32([[2.0], [-4.0], [0.0]])
    x = torch.cat([off_tie_data(s.item(), z.item(), (1, 40), seed=9) for s, z in zip(scale, zp)])
    expected = fake_quantize(x, scale, zp, qrange, kernel)
    assert torch.equal(fused_fake_quantize(x, scale, zp, qrange, kernel), expected)
    act = parse_granularity("per_channel")
    y = off_tie_data(0.1, 2.0, (4, 3, 5), seed=10)
    s3, z3 = scale.reshape(1, 3, 1), zp.reshape(1, 3, 1)
    assert torch.equal(
        fused_fake_quantize(y, s3, z3, qrange, act), fake_quantize(y, s3, z3, qrange, act)
    )


TIES = [
    # x / scale is exactly 4.5 and rounds to even; x * (1 / scale) is 4.5000005 and rounds up.
    (0.17308007180690765, 0.038462236523628235, 0.0, 4.0, 5.0),
    # x / scale is 35.499996 and x / scale + 7 rounds down to 42; the fused op rounds
    # x * (1 / scale) = 35.5 up to 36 before adding the zero point.
    (1.023016333580017, 0.02881736308336258, 7.0, 42.0, 43.0),
]


@pytest.mark.parametrize("x, scale, zp, nni_q, fused_q", TIES)
def test_fused_differs_from_nni_at_a_tie(x, scale, zp, nni_q, fused_q):
    x, scale, zp, qrange = f32([x]), f32(scale), f32(zp), quant_range("int8")
    exact = fake_quantize(x, scale, zp, qrange)
    assert torch.equal(exact, nni_formula(x, scale, zp, -127, 127))
    assert torch.equal(exact, (f32([nni_q]) - zp) * scale)
    assert torch.equal(fused_fake_quantize(x, scale, zp, qrange), (f32([fused_q]) - zp) * scale)


def test_fused_gradient_is_straight_through():
    x = (torch.randn(6, 4, generator=torch.Generator().manual_seed(2)) * 10).requires_grad_()
    fused_fake_quantize(x, f32(0.05), f32(1.0), quant_range("int4")).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    x.grad = None
    kernel = parse_granularity("out_channel")
    fused_fake_quantize(
        x, torch.full((6, 1), 0.05), torch.zeros(6, 1), quant_range("int4"), kernel
    ).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize(
    "kernel, scale, zp",
    [
        (BlockKernel((2, 2)), torch.full((2, 2), 0.1), torch.zeros(2, 2)),
        (None, f32(0.1), f32(0.5)),
    ],
)
def test_fused_falls_back_to_exact(kernel, scale, zp):
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(4)).requires_grad_()
    qrange = quant_range("int8")
    out = fused_fake_quantize(x, scale, zp, qrange, kernel)
    assert torch.equal(out, fake_quantize(x, scale, zp, qrange, kernel))
    assert out.grad_fn is not None and "ClampRound" in type(out.grad_fn).__name__
