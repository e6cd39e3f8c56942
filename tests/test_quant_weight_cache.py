"""The fake-quantized weight is kept between forwards, and never served once anything it came from changed."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from dsl_compress import prune, quantize
from dsl_compress.engine.transforms import ResultCache

WEIGHT_INT8 = {
    "op_types": ["Linear"],
    "target_names": ["weight"],
    "quant_dtype": "int8",
    "quant_scheme": "symmetric",
    "granularity": "out_channel",
}
INPUT_INT8 = {
    "op_types": ["Linear"],
    "target_names": ["_input_"],
    "quant_dtype": "int8",
    "quant_scheme": "affine",
}


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def batch(seed: int = 1) -> torch.Tensor:
    return torch.randn(5, 8, generator=torch.Generator().manual_seed(seed))


def quantized(model=None):
    model = model if model is not None else mlp()
    compression = quantize(model, [WEIGHT_INT8, INPUT_INT8], calib=[batch()])
    return model, compression


def transforms(model):
    return [m.parametrizations.weight[0] for m in model.modules() if parametrize.is_parametrized(m)]


def fresh_weight(layer) -> torch.Tensor:
    """The fake-quantized weight computed now, bypassing the cache."""
    transform = layer.parametrizations.weight[0]
    with torch.no_grad():
        return transform._compute(layer.parametrizations.weight.original)


def uncached_output(model, x) -> torch.Tensor:
    for transform in transforms(model):
        transform.cache = False
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for transform in transforms(model):
            transform.cache = True


def test_weight_is_kept_without_grad_and_recomputed_with_grad():
    model, _ = quantized()
    layer = model[0]
    with torch.no_grad():
        assert layer.weight is layer.weight
    assert layer.weight is not layer.weight
    assert layer.weight.grad_fn is not None


def test_outputs_identical_with_and_without_the_cache():
    model, _ = quantized()
    x = batch(2)
    with torch.no_grad():
        first, second = model(x), model(x)
    expected = uncached_output(model, x)
    with_grad = model(x).detach()
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert torch.equal(with_grad, expected)


def test_only_quantized_parameters_keep_results():
    model, _ = quantized()
    assert all(t.cache for t in transforms(model))
    pruned = mlp()
    prune(pruned, [{"op_types": ["Linear"], "sparse_ratio": 0.5}])
    assert not any(t.cache for t in transforms(pruned))


def test_weight_written_in_place_is_requantized():
    model, _ = quantized()
    layer, x = model[0], batch()
    with torch.no_grad():
        before = model(x)
        layer.parametrizations.weight.original.mul_(3)
        after = model(x)
    assert not torch.equal(before, after)
    assert torch.equal(after, uncached_output(model, x))
    with torch.no_grad():
        assert torch.equal(layer.weight, fresh_weight(layer))


def test_optimizer_step_is_seen_by_the_next_no_grad_forward():
    model, _ = quantized()
    x = batch()
    with torch.no_grad():
        model(x)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).pow(2).sum().backward()
    optimizer.step()
    with torch.no_grad():
        after = model(x)
    assert torch.equal(after, uncached_output(model, x))
    for layer in (model[0], model[2]):
        with torch.no_grad():
            assert torch.equal(layer.weight, fresh_weight(layer))


def test_load_state_dict_is_seen():
    model, _ = quantized()
    other, _ = quantized(mlp(seed=7))
    x = batch()
    with torch.no_grad():
        before = model(x)
        model.load_state_dict(other.state_dict())
        after = model(x)
        for mine, theirs in zip((model[0], model[2]), (other[0], other[2])):
            assert torch.equal(mine.weight, theirs.weight)
    assert not torch.equal(before, after)
    assert torch.equal(after, uncached_output(model, x))


def test_scale_changed_in_place_or_replaced_is_seen():
    model, _ = quantized()
    layer = model[0]
    transform = layer.parametrizations.weight[0]
    with torch.no_grad():
        before = layer.weight
        transform.scale.mul_(2)
        doubled = layer.weight
        assert not torch.equal(before, doubled)
        assert torch.equal(doubled, fresh_weight(layer))
        transform.zero_point = transform.zero_point + 1
        shifted = layer.weight
        assert not torch.equal(doubled, shifted)
        assert torch.equal(shifted, fresh_weight(layer))


def test_data_reassigned_or_dtype_changed_is_seen():
    model, _ = quantized()
    layer = model[0]
    original = layer.parametrizations.weight.original
    with torch.no_grad():
        before = layer.weight
    original.data = original.data * 2
    with torch.no_grad():
        assert not torch.equal(layer.weight, before)
        assert torch.equal(layer.weight, fresh_weight(layer))
    model.double()
    with torch.no_grad():
        assert layer.weight.dtype == torch.float64
        assert torch.equal(layer.weight, fresh_weight(layer))


def test_writing_into_the_served_weight_does_not_poison_the_cache():
    model, _ = quantized()
    layer = model[0]
    with torch.no_grad():
        served = layer.weight
        expected = served.clone()
        served.zero_()
        assert torch.equal(layer.weight, expected)


def test_no_grad_result_is_not_used_when_training():
    model, _ = quantized()
    layer, x = model[0], batch()
    with torch.no_grad():
        model(x)
    model(x).sum().backward()
    original = layer.parametrizations.weight.original
    assert original.grad is not None and original.grad.abs().sum() > 0
    assert transforms(model)[0]._results._result is None


def test_frozen_weights_keep_their_result_and_input_grads_flow():
    model, _ = quantized()
    for p in model.parameters():
        p.requires_grad_(False)
    x = batch().requires_grad_()
    model(x).sum().backward()
    assert x.grad is not None
    layer = model[0]
    assert layer.weight is layer.weight


def test_inference_mode_result_serves_later_training_forwards():
    model, _ = quantized()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        expected = model(batch())
    x = batch().requires_grad_()
    out = model(x)
    out.sum().backward()
    assert torch.equal(out.detach(), expected)
    assert x.grad is not None


def test_finalize_after_cached_forwards_bakes_the_same_weights():
    cached_model, cached = quantized()
    plain_model, plain = quantized()
    for transform in transforms(plain_model):
        transform.cache = False
    x = batch()
    with torch.no_grad():
        cached_model(x)
        plain_model(x)
    with pytest.warns(UserWarning):
        cached.finalize()
    with pytest.warns(UserWarning):
        plain.finalize()
    assert not parametrize.is_parametrized(cached_model[0])
    for a, b in zip(cached_model.state_dict().values(), plain_model.state_dict().values()):
        assert torch.equal(a, b)
    with torch.no_grad():
        cached_model[0].weight.mul_(2)
        assert torch.equal(cached_model[0].weight, 2 * plain_model[0].weight)


def test_restore_after_cached_forwards_gives_the_original_weights():
    model = mlp()
    original = copy.deepcopy(model.state_dict())
    _, compression = quantized(model)
    with torch.no_grad():
        model(batch())
    compression.restore()
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key])


def test_deep_copies_and_pickles_drop_the_kept_result():
    model, _ = quantized()
    x = batch()
    with torch.no_grad():
        expected = model(x)
    assert transforms(model)[0]._results._result is not None
    clone = copy.deepcopy(model)
    assert transforms(clone)[0]._results._result is None
    with torch.no_grad():
        assert torch.equal(clone(x), expected)
    kept = ResultCache()
    kept.get((), (torch.ones(2),), lambda: torch.zeros(2))
    assert pickle.loads(pickle.dumps(kept))._result is None


def test_cache_serves_only_the_same_tensors_and_settings():
    cache, calls = ResultCache(), []
    a, b = torch.ones(3), torch.ones(3)
    setting = object()

    def compute():
        calls.append(1)
        return torch.zeros(3)

    cache.get((setting,), (a,), compute)
    cache.get((setting,), (a,), compute)
    assert len(calls) == 1
    cache.get((setting,), (b,), compute)
    cache.get((object(),), (b,), compute)
    assert len(calls) == 3
    cache.clear()
    cache.get((setting,), (b,), compute)
    assert len(calls) == 4


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_a_traced_model_computes_the_weights_instead_of_freezing_the_kept_ones():
    model, _ = quantized()
    x = batch()
    with torch.no_grad():
        before = model(x)
        traced = torch.jit.trace(model, x, check_trace=False)
        assert torch.equal(traced(x), before)
        model[0].parametrizations.weight.original.mul_(2)
        after = traced(x)
    assert not torch.equal(after, before)
    assert torch.equal(after, uncached_output(model, x))
    assert str(traced.inlined_graph).count("aten::round") == 4


def test_writes_through_data_are_seen_with_the_cache_turned_off():
    model = mlp()
    quantize(model, [WEIGHT_INT8, INPUT_INT8], calib=[batch()], cache_weights=False)
    assert not any(t.cache for t in transforms(model))
    layer, x = model[0], batch()
    with torch.no_grad():
        before = model(x)
        layer.parametrizations.weight.original.data.mul_(-1)  # escapes the version counter
        after = model(x)
    assert not torch.equal(before, after)
    assert torch.equal(after, uncached_output(model, x))


def test_apply_passes_the_cache_switch_to_the_engine():
    from dsl_compress import apply, parse

    rules = parse("quantize Linear.weight quant_dtype=int8 quant_scheme=symmetric")
    model = mlp()
    apply(rules, model, cache_weights=False)
    assert transforms(model) and not any(t.cache for t in transforms(model))
