"""Verbs compose on one model: a further verb adds its plan to the attached compression, and the
result is bit-for-bit what one apply of both plans gives."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from torch import nn

import dsl_compress as dc
from conftest import assert_same_state, state_copy
from dsl_compress import CompressionError
from dsl_compress.engine.compression import attached_compression

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
PRUNE_RULES = "prune Linear sparse_ratio=0.5"
QUANT_RULES = "quantize Linear.{weight,_input_} quant_dtype=int8"
PRUNE_CONFIG = [{"op_types": ["Linear"], "sparse_ratio": 0.5}]
QUANT_CONFIG = [{"op_types": ["Linear"], "quant_dtype": "int8", "target_names": ["weight"]}]


def mlp(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(dtype)


def batch(dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(5, 8, generator=torch.Generator().manual_seed(1)).to(dtype)


def both_in_one_apply(
    dtype: torch.dtype, rules: str, calib=None
) -> tuple[nn.Module, dc.Compression]:
    model = mlp(dtype)
    return model, dc.apply(dc.parse(rules), model, calib)


def assert_same_compression(got: dc.Compression, want: dc.Compression) -> None:
    for name, targets in want.masks().items():
        for target, mask in targets.items():
            assert torch.equal(got.masks()[name][target], mask), f"{name}.{target}"
    for name, targets in want.quant_params().items():
        for target, params in targets.items():
            mine = got.quant_params()[name][target]
            assert torch.equal(mine["scale"], params["scale"]), f"{name}.{target}"
            assert torch.equal(mine["zero_point"], params["zero_point"]), f"{name}.{target}"
    assert got.masks().keys() == want.masks().keys()
    assert got.quant_params().keys() == want.quant_params().keys()


def plain(model: nn.Module) -> bool:
    return not any(hasattr(m, "parametrizations") or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("end", ["finalize", "restore"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_prune_then_quantize_is_one_apply_of_both(dtype, end):
    x = batch(dtype)
    model = mlp(dtype)
    original = state_copy(model)
    first = dc.apply(dc.parse(PRUNE_RULES), model)
    second = dc.apply(dc.parse(QUANT_RULES), model, [x])
    assert second is first and attached_compression(model) is first
    reference, want = both_in_one_apply(dtype, f"{PRUNE_RULES}\n{QUANT_RULES}", [x])
    assert_same_compression(second, want)
    assert torch.equal(model(x), reference(x))
    with pytest.warns(UserWarning, match="X804") if end == "finalize" else nullcontext():
        getattr(second, end)()
        getattr(want, end)()
    assert plain(model) and attached_compression(model) is None
    assert_same_state(model, state_copy(reference))
    if end == "restore":
        assert_same_state(model, original)


@pytest.mark.parametrize("dtype", DTYPES)
def test_restore_of_a_composition_gives_back_the_original_weights(dtype):
    x = batch(dtype)
    model = mlp(dtype)
    original, params = state_copy(model), list(model.parameters())
    dc.prune(model, PRUNE_CONFIG)  # the returned object may be dropped: the model keeps it
    compression = dc.quantize(model, QUANT_CONFIG)
    assert not torch.equal(model(x), mlp(dtype)(x))
    compression.restore()
    assert plain(model) and attached_compression(model) is None
    assert_same_state(model, original)
    assert all(a is b for a, b in zip(model.parameters(), params))


@pytest.mark.parametrize("dtype", DTYPES)
def test_prune_and_quantize_verbs_compose_in_either_order(dtype):
    x = batch(dtype)
    rules = "prune Linear sparse_ratio=0.5\nquantize Linear.weight quant_dtype=int8"
    reference, want = both_in_one_apply(dtype, rules)
    want_out = reference(x)
    want.finalize()
    orders = [[(dc.prune, PRUNE_CONFIG), (dc.quantize, QUANT_CONFIG)]]
    orders.append(orders[0][::-1])
    for order in orders:
        model = mlp(dtype)
        compression = [verb(model, config) for verb, config in order][-1]
        assert_same_compression(compression, want)
        assert torch.equal(model(x), want_out)
        compression.finalize()
        assert plain(model)
        assert_same_state(model, state_copy(reference))


def test_a_second_quantizer_on_a_tensor_is_an_error_naming_it_and_the_earlier_one():
    model = mlp(torch.float32)
    x = batch(torch.float32)
    compression = dc.apply(dc.parse("quantize Linear.weight quant_dtype=int8", "a.rules"), model)
    before = model(x)
    with pytest.raises(CompressionError) as info:
        dc.apply(dc.parse("quantize 2.weight quant_dtype=int4", "b.rules"), model)
    (diag,) = info.value.diagnostics
    assert diag.code == "X801" and (diag.span.file, diag.span.line) == ("b.rules", 1)
    assert "'2.weight' already has a quantizer" in diag.message and "a.rules:1:1" in diag.message
    assert "dc.apply" in diag.hint
    assert attached_compression(model) is compression and torch.equal(model(x), before)


def test_a_failed_further_verb_leaves_the_earlier_compression_as_it_was():
    model = mlp(torch.float32)
    x = batch(torch.float32)
    original = state_copy(model)
    compression = dc.prune(model, PRUNE_CONFIG)
    before = model(x)
    activations = [{"op_types": ["Linear"], "quant_dtype": "int8", "target_names": ["_input_"]}]
    with pytest.raises(CompressionError) as info:
        dc.quantize(model, activations)  # no calibration batches
    assert info.value.codes == ["Q602"]
    assert attached_compression(model) is compression and torch.equal(model(x), before)
    assert len(compression.plan.entries) == 4
    compression.restore()
    assert_same_state(model, original)


def test_distillation_composes_with_pruning():
    student, teacher = mlp(torch.float32), mlp(torch.float32)
    x = batch(torch.float32)
    compression = dc.prune(student, PRUNE_CONFIG)
    assert dc.distill(student, teacher, [{"op_names": ["2"]}]) is compression
    student(x), teacher(x)
    assert compression.loss().item() > 0
    compression.restore()
    assert plain(student) and plain(teacher)
