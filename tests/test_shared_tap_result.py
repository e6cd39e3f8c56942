"""Taps that read one input tensor with equal quantizers (attention's q, k, v) quantize it once
and get the same bits as each computing on its own; anything that could change the bits
computes again."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import dsl_compress as dc
from dsl_compress.engine.quant_dtypes import quant_range
from dsl_compress.engine.quantize import QuantParams
from dsl_compress.engine.result_cache import SharedResult, quantizer_token
from dsl_compress.engine.transforms import TargetTransform

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
INPUTS = [{"op_types": ["Linear"], "target_names": ["_input_"], "quant_dtype": "int8"}]


class Qkv(nn.Module):
    """Three projections of one input, then one of their sum."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(8, 8) for _ in range(4))

    def forward(self, x):
        return self.out(self.q(x) + self.k(x) * self.v(x))


def qkv(dtype):
    torch.manual_seed(0)
    return Qkv().to(dtype).eval()


def seen_inputs(model):
    """{module name: the input tensor its forward got} (after the taps, which ran first)."""
    seen = {}
    for name in ("q", "k", "v", "out"):
        hook = lambda m, args, name=name: seen.__setitem__(name, args[0])  # noqa: E731
        getattr(model, name).register_forward_pre_hook(hook)
    return seen


def unshared(model):
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, TargetTransform):
            module.shared = None
    return plain


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_q_k_v_get_one_quantized_input_with_the_bits_each_would_compute(dtype):
    model = qkv(dtype)
    calib = [torch.randn(4, 8).to(dtype) for _ in range(2)]
    dc.quantize(model, INPUTS, calib=calib)
    reference, seen = unshared(model), seen_inputs(model)
    with torch.no_grad():
        out = model(calib[0])
        assert seen["q"] is seen["k"] is seen["v"] and seen["out"] is not seen["q"]
        assert torch.equal(
            out.view(-1).view(torch.uint8), reference(calib[0]).view(-1).view(torch.uint8)
        )


def quant(scale=0.05, zp=0.0):
    return QuantParams(torch.tensor(scale), torch.tensor(zp), quant_range("int8"), None, None)


def taps(*quants, fused=False):
    shared = SharedResult()
    return [TargetTransform(quant=q, fused=fused, shared=shared) for q in quants]


def test_different_scales_or_zero_points_are_not_shared():
    x = torch.tensor([-0.0, 0.3, -1.2, 2.5])
    for other in (quant(0.07), quant(zp=-0.0), quant(zp=1.0)):
        first, second = taps(quant(), other)
        with torch.no_grad():
            a, b = first(x), second(x)
        assert a is not b
        expected = TargetTransform(quant=other)(x)
        assert torch.equal(b.view(torch.int32), expected.view(torch.int32))


def test_a_mask_or_a_graph_or_inference_mode_computes_on_its_own():
    x = torch.randn(6)
    shared = SharedResult()
    masked = TargetTransform(torch.ones(6, dtype=torch.bool), quant=quant(), shared=shared)
    plain = TargetTransform(quant=quant(), shared=shared)
    assert masked.shared is None
    with torch.no_grad():
        assert plain(x) is not plain(x.clone())
    y = x.clone().requires_grad_(True)
    assert plain(y) is not plain(y) and plain(y).grad_fn is not None
    with torch.inference_mode():
        z = torch.randn(6)
        assert plain(z) is not plain(z)
        assert torch.equal(plain(z), TargetTransform(quant=quant())(z))


def test_a_write_into_the_input_or_the_served_result_computes_again():
    x = torch.randn(16)
    first, second = taps(quant(), quant())
    with torch.no_grad():
        served = first(x)
        assert second(x) is served
        served.add_(1.0)
        fresh = second(x)
        assert fresh is not served
        assert torch.equal(fresh, TargetTransform(quant=quant())(x))
        x.mul_(3.0)
        again = first(x)
        assert again is not fresh and torch.equal(again, TargetTransform(quant=quant())(x))


def test_a_scale_written_in_place_changes_the_token():
    x = torch.randn(16)
    first, second = taps(quant(), quant())
    with torch.no_grad():
        served = first(x)
        second.scale.mul_(2.0)
        other = second(x)
    assert other is not served
    assert torch.equal(other, TargetTransform(quant=quant(0.1))(x))


def test_tokens_compare_bits_not_values():
    settings = (quant_range("int8"), None, False)
    zeros = [quantizer_token(settings, torch.tensor(0.05), torch.tensor(z)) for z in (0.0, -0.0)]
    assert zeros[0] != zeros[1]
    nan = torch.tensor(float("nan"))
    assert quantizer_token(settings, nan, nan) == quantizer_token(settings, nan, nan)
    wide = quantizer_token(settings, torch.tensor(0.05, dtype=torch.float64), torch.tensor(0.0))
    assert wide != quantizer_token(settings, torch.tensor(0.05), torch.tensor(0.0))


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_copied_taps_drop_the_shared_result_and_still_share(clone):
    x = torch.randn(16)
    with torch.no_grad():
        originals = taps(quant(), quant())
        originals[0](x)
        first, second = clone(originals)
        assert first.shared is second.shared is not originals[0].shared
        assert first.shared._result is None and first._prepared.steps is None
        served = first(x)
        assert second(x) is served and torch.equal(served, originals[1](x))
