"""dsl_compress.quantize end to end: NNI scale tables, exact forward formula, calibration, order, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_same_state, state_copy
from dsl_compress import CompressionError, Mode, Plan, build_plan, quantize, run_plan

WEIGHT = [[1.0, -2.0, 0.5], [4.0, 0.25, -1.0]]


def linear(weight=WEIGHT, bias=True):
    layer = nn.Linear(3, 2, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        if bias:
            layer.bias.copy_(torch.tensor([0.1, -0.3]))
    return nn.Sequential(layer)


def nni_fake_quant(x, scale, zp, qmin, qmax):
    return (torch.round(torch.clamp(x / scale + zp, qmin, qmax)) - zp) * scale


@pytest.mark.parametrize(
    "dtype, scheme, scale, zp",
    [
        ("int8", "symmetric", 4 / 127, 0.0),
        ("uint8", "symmetric", 4 / 127.5, 128.0),
        ("int8", "affine", 6 / 254, -42.0),
        ("uint8", "affine", 6 / 255, 85.0),
    ],
)
def test_weight_scales_match_the_nni_table(dtype, scheme, scale, zp):
    model = linear()
    config = [
        {
            "op_types": ["Linear"],
            "quant_dtype": dtype,
            "quant_scheme": scheme,
            "target_names": ["weight"],
        }
    ]
    params = quantize(model, config).quant_params()["0"]["weight"]
    assert params["scale"].item() == pytest.approx(scale, rel=1e-6)
    assert params["zero_point"].item() == zp
    assert params["quant_dtype"] == dtype and params["quant_scheme"] == scheme


def test_per_channel_block_scales_match_the_nni_table():
    model = linear()
    out = quantize(
        model,
        [
            {
                "op_types": ["Linear"],
                "quant_dtype": "int4",
                "quant_scheme": "affine",
                "granularity": "out_channel",
                "target_names": ["weight"],
            }
        ],
    ).quant_params()["0"]["weight"]
    assert out["scale"].shape == (2, 1)
    assert out["scale"].flatten().tolist() == pytest.approx([3 / 14, 5 / 14])
    assert out["zero_point"].flatten().tolist() == [2.0, -4.0]
    assert (out["qmin"], out["qmax"]) == (-7, 7)


def test_default_config_quantizes_bias_too_and_the_forward_is_exact():
    model = linear()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    w = model[0].weight.detach().clone()
    compression = quantize(
        model,
        [{"op_types": ["Linear"], "quant_dtype": "int8", "quant_scheme": "affine"}],
        calib=[x],
    )
    params = compression.quant_params()["0"]
    assert set(params) == {"weight", "bias", "_input_0", "_output_0"}

    def fq(t, name):
        p = params[name]
        return nni_fake_quant(t, p["scale"], p["zero_point"], p["qmin"], p["qmax"])

    expected = fq(
        F.linear(fq(x, "_input_0"), fq(w, "weight"), fq(torch.tensor([0.1, -0.3]), "bias")),
        "_output_0",
    )
    assert torch.equal(model(x), expected)


def test_activation_scales_come_from_running_min_max_over_batches():
    model = linear()
    batches = [torch.full((1, 3), v) for v in (-2.0, 1.0, 3.0)]
    params = quantize(
        model,
        [
            {
                "op_types": ["Linear"],
                "quant_dtype": "int8",
                "quant_scheme": "affine",
                "target_names": ["_input_"],
            }
        ],
        calib=batches,
    ).quant_params()["0"]["_input_0"]
    assert params["scale"].item() == pytest.approx(5 / 254)


def weight_prune_and_int8_plan(model, prune_extra: dict) -> Plan:
    """Half the weight rows pruned and the weight quantized int8, in one plan."""
    prune = {"op_types": ["Linear"], "sparse_ratio": 0.5, "target_names": ["weight"]}
    quant = {"op_types": ["Linear"], "quant_dtype": "int8", "target_names": ["weight"]}
    return Plan(
        build_plan(model, [{**prune, **prune_extra}], Mode.PRUNE).entries
        + build_plan(model, [quant], Mode.QUANTIZE).entries
    )


def test_quantize_then_mask_on_the_same_weight():
    model = linear()
    compression = run_plan(model, weight_prune_and_int8_plan(model, {}))
    p = compression.quant_params()["0"]["weight"]
    mask = compression.masks()["0"]["weight"]
    expected = nni_fake_quant(torch.tensor(WEIGHT), p["scale"], p["zero_point"], -127, 127) * mask
    assert torch.equal(model[0].weight, expected)
    assert mask.tolist() == [[False] * 3, [True] * 3]


def test_straight_through_gradient_lets_a_quantized_model_train():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    quantize(model, [{"op_types": ["Linear"], "quant_dtype": "int8", "target_names": ["weight"]}])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert model[0].parametrizations.weight.original.grad is not None


def test_fused_kernels_give_the_same_result_away_from_ties():
    model_a, model_b = linear(), linear()
    config = [
        {
            "op_types": ["Linear"],
            "quant_dtype": "int8",
            "target_names": ["weight"],
            "granularity": "out_channel",
        }
    ]
    quantize(model_a, config)
    quantize(model_b, config, fused=True)
    assert torch.allclose(model_a[0].weight, model_b[0].weight)


def test_input_named_by_positional_argument_is_quantized():
    class Scale(nn.Module):
        def forward(self, x):
            return x * 1.0

    from dsl_compress import QuantizationSetting

    QuantizationSetting.register(
        "Scale",
        {
            "_input_": {
                "quant_dtype": None,
                "quant_scheme": None,
                "granularity": "default",
                "apply_method": "clamp_round",
            }
        },
    )
    model = nn.Sequential(Scale())
    x = torch.linspace(-1.0, 1.0, 7).reshape(1, 7)
    compression = quantize(
        model,
        [{"op_types": ["Scale"], "quant_dtype": "int2", "target_names": ["_input_x"]}],
        calib=[x],
    )
    params = compression.quant_params()["0"]["_input_x"]
    assert params["scale"].item() == pytest.approx(1.0)
    assert model(x).tolist() == [[-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0]]


def test_missing_calibration_is_an_error_and_nothing_changes():
    model = linear()
    before = state_copy(model)
    with pytest.raises(CompressionError) as info:
        quantize(model, [{"op_types": ["Linear"], "quant_dtype": "int8"}])
    assert info.value.codes == ["Q602"]
    assert "calib=[batch, ...]" in str(info.value)
    assert type(model[0]) is nn.Linear
    assert_same_state(model, before)


def test_never_observed_output_is_an_error():
    model = linear()
    with pytest.raises(CompressionError) as info:
        quantize(
            model,
            [{"op_types": ["Linear"], "quant_dtype": "int8", "target_names": ["_output_1"]}],
            calib=[torch.randn(1, 3)],
        )
    assert info.value.codes == ["Q601"]
    assert "'0._output_1' saw no tensor" in str(info.value)
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks


@pytest.mark.parametrize("dtype", ["int9", "float16"])
def test_unknown_quant_dtype_is_rejected(dtype):
    with pytest.raises(CompressionError) as info:
        quantize(linear(), [{"op_types": ["Linear"], "quant_dtype": dtype}])
    assert info.value.codes == ["C106"]


def test_calibration_leaves_batchnorm_statistics_and_training_flags_alone():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model.train()
    before = state_copy(model)
    quantize(
        model,
        [{"op_types": ["BatchNorm1d"], "quant_dtype": "int8", "target_names": ["_input_"]}],
        calib=[torch.randn(6, 3)],
    )
    assert model.training and model[1].training
    assert torch.equal(model[1].running_mean, before["1.running_mean"])


def test_in_channel_weight_scales_through_the_api():
    model = linear()
    config = [
        {
            "op_types": ["Linear"],
            "quant_dtype": "int4",
            "quant_scheme": "symmetric",
            "granularity": "in_channel",
            "target_names": ["weight"],
        }
    ]
    params = quantize(model, config).quant_params()["0"]["weight"]
    assert params["scale"].shape == (1, 3)
    assert params["scale"].flatten().tolist() == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert params["zero_point"].flatten().tolist() == [0.0, 0.0, 0.0]


def test_activations_are_calibrated_through_the_masks_of_the_same_plan():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6))
    x = torch.randn(16, 6)
    plan = Plan(
        build_plan(
            model, [{"op_names": ["0"], "sparse_ratio": 0.5}], Mode.PRUNE, metric="level"
        ).entries
        + build_plan(
            model,
            [
                {
                    "op_names": ["1"],
                    "quant_dtype": "int8",
                    "quant_scheme": "affine",
                    "target_names": ["_input_"],
                }
            ],
            Mode.QUANTIZE,
        ).entries
    )
    compression = run_plan(model, plan, calib=[x])
    with torch.no_grad():
        seen = model[0](x)  # the pruned first layer: what the second layer really receives
    lo, hi = min(seen.min().item(), 0.0), max(seen.max().item(), 0.0)
    scale = compression.quant_params()["1"]["_input_0"]["scale"].item()
    assert scale == pytest.approx((hi - lo) / 254, rel=1e-6)
    assert "0" not in compression.quant_params()


def test_quantize_then_mask_order_is_visible_with_the_add_method():
    model = linear(bias=False)
    compression = run_plan(model, weight_prune_and_int8_plan(model, {"apply_method": "add"}))
    p = compression.quant_params()["0"]["weight"]
    mask = compression.masks()["0"]["weight"]
    quantized = nni_fake_quant(torch.tensor(WEIGHT), p["scale"], p["zero_point"], -127, 127)
    assert torch.equal(model[0].weight, quantized + torch.where(mask, 0.0, -1000.0))


def test_quant_apply_method_is_overwritten_with_a_warning():
    model = linear()
    config = [
        {
            "op_types": ["Linear"],
            "quant_dtype": "int8",
            "apply_method": "bypass",
            "target_names": ["weight"],
        }
    ]
    with pytest.warns(UserWarning, match="Q603"):
        compression = quantize(model, config)
    assert "weight" in compression.quant_params()["0"]


def test_targets_added_by_target_settings_inherit_the_quant_dtype():
    model = linear()
    config = [
        {
            "op_types": ["Linear"],
            "quant_dtype": "int4",
            "target_names": ["_output_"],
            "target_settings": {"_output_0": {"quant_scheme": "affine"}},
        }
    ]
    params = quantize(model, config, calib=[torch.randn(2, 3)]).quant_params()["0"]["_output_0"]
    assert (params["qmin"], params["qmax"], params["quant_dtype"]) == (-7, 7, "int4")


def test_per_channel_activation_and_block_weight_granularity_through_the_api(conv_bn):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    config = [
        {
            "op_names": ["conv1"],
            "quant_dtype": "int8",
            "granularity": "per_channel",
            "target_names": ["_output_"],
        },
        {
            "op_names": ["conv1"],
            "quant_dtype": "int4",
            "granularity": [3, 3, 3],
            "target_names": ["weight"],
        },
    ]
    with torch.no_grad():
        raw_out = conv_bn.conv1(x)
        raw_w = conv_bn.conv1.weight.detach().clone()
    compression = quantize(conv_bn, config, calib=[x])
    params = compression.quant_params()["conv1"]
    out, w = params["_output_0"], params["weight"]
    assert out["scale"].shape == (1, 4, 1, 1)
    expected = raw_out.abs().amax(dim=(0, 2, 3)) / 127
    assert torch.allclose(out["scale"].flatten(), expected)
    assert w["scale"].shape == (4, 1, 1, 1)
    blocks = raw_w.reshape(4, 1, 27).abs().amax(-1).flatten() / 7
    assert torch.allclose(w["scale"].flatten(), blocks)
    with torch.no_grad():
        got = conv_bn.conv1(x)
    assert torch.equal(
        got, nni_fake_quant(raw_out_from(conv_bn, x, w), out["scale"], 0.0, -127, 127)
    )


def raw_out_from(model, x, weight_params):
    """conv1 with the fake-quantized weight, computed independently of the engine."""
    conv = model.conv1
    w = conv.parametrizations.weight.original
    qw = nni_fake_quant(w, weight_params["scale"], 0.0, -7, 7)
    return F.conv2d(x, qw, conv.bias)
