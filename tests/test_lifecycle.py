"""The compression lifecycle: finalize bakes and leaves a plain model, restore is bit-identical."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import assert_same_state, state_copy
from dsl_compress import CompressionError, prune, quantize

PRUNE = [{"op_types": ["Linear"], "sparse_ratio": 0.5}]


def plain(model: nn.Module) -> bool:
    return all(
        type(m).__module__.startswith("torch.nn.modules")
        and not m._forward_hooks
        and not m._forward_pre_hooks
        and not hasattr(m, "parametrizations")
        for m in model.modules()
        if m is not model
    )


def test_finalize_bakes_masks_into_plain_weights(two_linear):
    keys = list(two_linear.state_dict())
    compression = prune(two_linear, PRUNE)
    masks = compression.masks()
    x = torch.randn(3, 4)
    before = two_linear(x)
    model = compression.finalize()
    assert plain(model) and list(model.state_dict()) == keys
    assert torch.equal(model(x), before)
    for name in ("fc1", "fc2"):
        layer = getattr(model, name)
        assert type(layer.weight) is nn.Parameter
        assert torch.equal(layer.weight == 0, ~masks[name]["weight"])
        assert torch.equal(layer.bias == 0, ~masks[name]["bias"])


def test_finalize_bakes_quantized_weights():
    model = nn.Sequential(nn.Linear(4, 4))
    compression = quantize(
        model, [{"op_types": ["Linear"], "quant_dtype": "int4", "target_names": ["weight"]}]
    )
    quantized = model[0].weight.detach().clone()
    compression.finalize()
    scale = compression.quant_params()["0"]["weight"]["scale"]
    assert torch.equal(model[0].weight.detach(), quantized)
    assert torch.allclose(model[0].weight / scale, torch.round(model[0].weight / scale))
    assert plain(model)


def test_restore_gives_back_bit_identical_weights_and_no_hooks(conv_bn):
    before = state_copy(conv_bn)
    params = [p for p in conv_bn.parameters()]
    compression = prune(
        conv_bn,
        [{"op_types": ["Conv2d", "BatchNorm2d"], "sparse_ratio": 0.5}],
        calib=[torch.randn(1, 3, 8, 8)],
    )
    assert not plain(conv_bn)
    compression.restore()
    assert plain(conv_bn)
    assert_same_state(conv_bn, before)
    assert all(a is b for a, b in zip(conv_bn.parameters(), params))


def test_one_mask_per_tensor_across_verbs(two_linear):
    compression = prune(two_linear, PRUNE)
    masks = compression.masks()
    with pytest.raises(CompressionError) as info:
        prune(two_linear, [{"op_names": ["fc1"], "sparse_ratio": 0.2}])
    assert info.value.codes == ["X801", "X801"]  # fc1.weight and fc1.bias
    assert torch.equal(compression.masks()["fc1"]["weight"], masks["fc1"]["weight"])
    compression.finalize()
    prune(two_linear, [{"op_names": ["fc1"], "sparse_ratio": 0.2}])


def test_a_closed_compression_refuses_further_use(two_linear):
    compression = prune(two_linear, PRUNE)
    compression.restore()
    for call in (compression.finalize, compression.restore, compression.loss):
        with pytest.raises(CompressionError) as info:
            call()
        assert info.value.codes == ["X802"]
    assert set(compression.masks()) == {"fc1", "fc2"}


def test_finalize_and_restore_remove_activation_and_distillation_hooks():
    from dsl_compress import distill

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    x = torch.randn(2, 4)
    config = [
        {"op_types": ["Linear"], "quant_dtype": "int8", "target_names": ["_input_", "_output_"]}
    ]
    compression = quantize(model, config, calib=[x])
    assert not plain(model)
    with pytest.warns(UserWarning, match=r"X804.*0\._input_0, 0\._output_0"):
        compression.finalize()
    assert plain(model)
    assert set(compression.quant_params()["0"]) == {"_input_0", "_output_0"}
    teacher = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    compression = distill(model, teacher, [{"op_names": ["0"]}])
    assert not plain(model) and not plain(teacher)
    compression.restore()
    assert plain(model) and plain(teacher)


def test_a_dropped_compression_does_not_keep_its_model_alive():
    import gc
    import weakref

    model = nn.Sequential(nn.Linear(4, 4))
    prune(model, [{"op_types": ["Linear"], "sparse_ratio": 0.5}])
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
