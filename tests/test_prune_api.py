"""dsl_compress.prune end to end on tiny models: NNI worked examples, groups, align, apply methods, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import FC2_WEIGHT, assert_same_state, state_copy
from dsl_compress import CompressionError, build_plan, prune, run_plan


def kept_rows(mask: torch.Tensor) -> list[bool]:
    return mask.reshape(mask.shape[0], -1).any(dim=1).tolist()


@pytest.mark.parametrize(
    "setting, rows",
    [
        ({"sparse_ratio": 0.5}, [False, True, False, True]),
        ({"sparse_ratio": 0.3}, [True, True, False, True]),
        ({"sparse_threshold": 10.0}, [True, True, False, True]),
        ({"sparse_threshold": 100.0, "max_sparse_ratio": 0.5}, [False, True, False, True]),
        ({"sparse_threshold": 0.0, "min_sparse_ratio": 0.5}, [False, True, False, True]),
        ({"sparse_ratio": 0.9, "max_sparse_ratio": 0.5}, [False, True, False, True]),
    ],
)
def test_nni_l1_out_channel_examples(two_linear, setting, rows):
    masks = prune(two_linear, [{"op_names": ["fc1"], **setting}], metric="l1").masks()
    weight, bias = masks["fc1"]["weight"], masks["fc1"]["bias"]
    assert weight.dtype == torch.bool and weight.shape == (4, 4)
    assert kept_rows(weight) == rows
    assert weight.all(dim=1).tolist() == rows
    assert bias.tolist() == rows


def test_forward_uses_the_masks(two_linear):
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    w, b = two_linear.fc1.weight.detach().clone(), two_linear.fc1.bias.detach().clone()
    prune(two_linear, [{"op_names": ["fc1"], "sparse_ratio": 0.5}])
    keep = torch.tensor([0.0, 1, 0, 1])
    expected = F.linear(x, w * keep[:, None], b * keep)
    assert torch.equal(two_linear.fc1(x), expected)


def test_level_is_element_wise_and_counts_are_floored():
    layer = nn.Sequential(nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        layer[0].weight.copy_(torch.arange(1.0, 17).reshape(4, 4))
    mask = prune(layer, [{"op_names": ["0"], "sparse_ratio": 0.3}], metric="level").masks()
    assert (~mask["0"]["weight"]).sum().item() == 4
    assert mask["0"]["weight"].flatten()[:4].tolist() == [False] * 4


def test_global_group_ranks_across_layers(two_linear):
    config = [
        {"op_names": ["fc1"], "sparse_ratio": 0.5, "global_group_id": "g"},
        {"op_names": ["fc2"], "sparse_ratio": 0.5, "global_group_id": "g"},
    ]
    masks = prune(two_linear, config).masks()
    assert kept_rows(masks["fc1"]["weight"]) == [False, True, False, True]
    assert kept_rows(masks["fc2"]["weight"]) == [True, False, False, True]


def test_global_group_at_ratio_one_prunes_everything(two_linear):
    config = [{"op_types": ["Linear"], "sparse_ratio": 1.0, "global_group_id": 0}]
    masks = prune(two_linear, config).masks()
    assert not masks["fc1"]["weight"].any() and not masks["fc2"]["weight"].any()


def test_dependency_group_shares_one_mask(two_linear):
    config = [{"op_types": ["Linear"], "sparse_ratio": 0.5, "dependency_group_id": 1}]
    masks = prune(two_linear, config).masks()
    assert torch.equal(masks["fc1"]["weight"], masks["fc2"]["weight"])
    assert kept_rows(masks["fc1"]["weight"])[2:] == [False, True]


def test_dependency_group_internal_blocks(two_linear):
    config = [
        {
            "op_types": ["Linear"],
            "sparse_ratio": 0.5,
            "dependency_group_id": 1,
            "internal_metric_block": 2,
        }
    ]
    masks = prune(two_linear, config).masks()
    assert kept_rows(masks["fc1"]["weight"]) == [False, True, False, True]


def test_nni_page_conv_bn_example_works_as_written_once_convs_have_a_ratio(conv_bn):
    config = [
        {"op_names": ["conv1", "conv2"], "granularity": "out_channel", "sparse_ratio": 0.5},
        *(
            {
                "op_names": [f"bn{i}"],
                "target_settings": {
                    "weight": {
                        "align": {"module_name": f"conv{i}", "target_name": "weight", "dims": [0]},
                        "granularity": "out_channel",
                    }
                },
            }
            for i in (1, 2)
        ),
    ]
    masks = prune(conv_bn, config).masks()
    for i in (1, 2):
        conv_rows = kept_rows(masks[f"conv{i}"]["weight"])
        assert masks[f"bn{i}"]["weight"].tolist() == conv_rows
        assert masks[f"bn{i}"]["bias"].tolist() == conv_rows
        assert sum(conv_rows) == len(conv_rows) // 2


def test_output_mask_by_align_zeroes_output_channels(conv_bn):
    config = [
        {"op_names": ["conv1"], "sparse_ratio": 0.5, "target_names": ["weight"]},
        {
            "op_names": ["conv1"],
            "target_names": ["_output_"],
            "target_settings": {
                "_output_": {
                    "align": {"module_name": None, "target_name": "weight", "dims": [0]},
                    "granularity": "per_channel",
                    "apply_method": "mul",
                }
            },
        },
    ]
    x = torch.randn(2, 3, 8, 8)
    compression = prune(conv_bn, config, calib=[x])
    rows = kept_rows(compression.masks()["conv1"]["weight"])
    out = conv_bn.conv1(x)
    for channel, kept in enumerate(rows):
        assert bool(out[:, channel].abs().sum() > 0) == kept


def test_apply_method_add_and_bypass(two_linear):
    x = torch.zeros(1, 4)
    prune(
        two_linear,
        [
            {"op_names": ["fc1"], "sparse_ratio": 0.5, "target_names": ["weight"]},
            {
                "op_names": ["fc1"],
                "target_names": ["bias"],
                "target_settings": {"bias": {"apply_method": "add"}},
            },
            {"op_names": ["fc2"], "sparse_ratio": 0.5, "apply_method": "bypass"},
        ],
    )
    assert two_linear.fc1(x)[0].tolist() == pytest.approx([0.1 - 1000, 0.2, 0.3 - 1000, 0.4])
    assert torch.equal(two_linear.fc2.weight, torch.tensor(FC2_WEIGHT))
    assert two_linear.fc2(x).tolist()[0] == pytest.approx([-0.1, -0.2, -0.3, -0.4])


def test_random_metric_is_seeded(two_linear):
    config = [{"op_types": ["Linear"], "sparse_ratio": 0.5, "granularity": None}]
    first = prune(two_linear, config, metric="random", seed=3)
    a = first.masks()["fc1"]["weight"].clone()
    first.restore()
    second = prune(two_linear, config, metric="random", seed=3)
    assert torch.equal(a, second.masks()["fc1"]["weight"])
    second.restore()
    other = prune(two_linear, config, metric="random", seed=4).masks()["fc1"]["weight"]
    assert not torch.equal(a, other)
    assert (~a).sum().item() == 8


def test_taylor_uses_calibration_gradients_and_leaves_grads_alone(two_linear):
    batches = [torch.randn(8, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]

    def loss_fn(model, batch):
        return model(batch).pow(2).sum()

    before = state_copy(two_linear)
    masks = prune(
        two_linear,
        [{"op_names": ["fc2"], "sparse_ratio": 0.5}],
        metric="taylor",
        calib=batches,
        loss_fn=loss_fn,
    ).masks()
    assert masks["fc2"]["weight"].sum().item() == 8
    assert two_linear.fc2.parametrizations.weight.original.grad is None
    assert torch.equal(two_linear.fc2.parametrizations.weight.original, before["fc2.weight"])
    scores = torch.zeros(4, 4)
    for batch in batches:
        ref = type(two_linear)()
        loss = loss_fn(ref, batch)
        (grad,) = torch.autograd.grad(loss, [ref.fc2.weight])
        scores += (ref.fc2.weight.detach() * grad) ** 2
    expected_rows = scores.sum(1).topk(2).indices.sort().values.tolist()
    assert [i for i, kept in enumerate(kept_rows(masks["fc2"]["weight"])) if kept] == expected_rows


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"metric": "taylor"}, "P507"),
        ({"metric": "l3"}, "P510"),
    ],
)
def test_metric_errors(two_linear, kwargs, code):
    with pytest.raises(CompressionError) as info:
        prune(two_linear, [{"op_names": ["fc1"], "sparse_ratio": 0.5}], **kwargs)
    assert info.value.codes == [code]


@pytest.mark.parametrize(
    "config, code",
    [
        ([{"op_names": ["fc1"], "sparse_ratio": 0.5, "granularity": [3, -1]}], "P501"),
        ([{"op_names": ["fc1"], "sparse_ratio": 0.5, "granularity": [1, 1, 1]}], "P501"),
        (
            [
                {"op_names": ["fc1"], "sparse_ratio": 0.5, "global_group_id": 0},
                {"op_names": ["fc2"], "sparse_ratio": 0.25, "global_group_id": 0},
            ],
            "P505",
        ),
        ([{"op_names": ["fc1"], "target_names": ["weight", "bias"]}], "P503"),
        ([{"op_names": ["fc1"], "sparse_ratio": 0.5, "metric": "l1"}], "C102"),
    ],
)
def test_bad_input_fails_before_the_model_is_touched(two_linear, config, code):
    before = state_copy(two_linear)
    with pytest.raises(CompressionError) as info:
        prune(two_linear, config)
    assert code in info.value.codes
    assert type(two_linear.fc1) is nn.Linear and type(two_linear.fc2) is nn.Linear
    assert_same_state(two_linear, before)


def test_align_cycle_is_an_error(two_linear):
    align = {"module_name": "fc2", "target_name": "weight", "dims": [0]}
    config = [
        {
            "op_names": ["fc1"],
            "target_names": ["weight"],
            "target_settings": {"weight": {"align": align}},
        },
        {
            "op_names": ["fc2"],
            "target_names": ["weight"],
            "target_settings": {"weight": {"align": {**align, "module_name": "fc1"}}},
        },
    ]
    with pytest.raises(CompressionError) as info:
        prune(two_linear, config)
    assert info.value.codes == ["P504"]
    assert "fc1.weight" in str(info.value) and "fc2.weight" in str(info.value)


def test_hundred_layer_model_gets_bool_masks_without_weight_copies():
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(100)])
    originals = [layer.weight for layer in model]
    compression = prune(model, [{"op_types": ["Linear"], "sparse_ratio": 0.5}])
    masks = compression.masks()
    assert all(m["weight"].dtype == torch.bool for m in masks.values())
    assert all(layer.parametrizations.weight.original is w for layer, w in zip(model, originals))
    assert sum(m["weight"].sum().item() for m in masks.values()) == 100 * 32 * 64


def test_long_rows_match_topk_with_and_without_ties():
    side = 300  # 90,000 element-wise metric entries
    for values in (torch.randperm(side * side), torch.arange(side * side) % 1000):
        layer = nn.Sequential(nn.Linear(side, side, bias=False))
        with torch.no_grad():
            layer[0].weight.copy_(values.reshape(side, side).float())
        mask = prune(layer, [{"op_names": ["0"], "sparse_ratio": 0.3}], metric="level").masks()
        count = int(side * side * 0.3)
        pruned = values.float().topk(count, largest=False).indices
        expected = torch.ones(side * side, dtype=torch.bool)
        expected[pruned] = False
        assert torch.equal(mask["0"]["weight"].flatten(), expected)


def test_input_mask_by_align_masks_input_features(two_linear):
    config = [
        {
            "op_names": ["fc2"],
            "sparse_ratio": 0.5,
            "granularity": "in_channel",
            "target_names": ["weight"],
        },
        {
            "op_names": ["fc2"],
            "target_names": ["_input_"],
            "target_settings": {
                "_input_": {"align": {"module_name": None, "target_name": "weight", "dims": [1]}}
            },
        },
    ]
    compression = prune(two_linear, config)
    columns = compression.masks()["fc2"]["weight"].any(0)
    assert compression.masks()["fc2"]["_input_0"].tolist() == columns.tolist()
    seen = []
    two_linear.fc2.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    two_linear(torch.ones(2, 4))
    assert torch.equal(seen[0][:, ~columns], torch.zeros(2, 2))


def test_dependency_group_ranks_by_the_mean_metric(two_linear):
    # Row L1 norms: fc1 [8, 5, 20, 30], fc2 [0, 5, 20, 30]. The mean [4, 5, 20, 30] prunes
    # row 0; a max [8, 5, 20, 30] would prune row 1.
    with torch.no_grad():
        two_linear.fc1.weight.copy_(
            torch.tensor([[8.0, 0, 0, 0], [5, 0, 0, 0], [20, 0, 0, 0], [30, 0, 0, 0]])
        )
        two_linear.fc2.weight.copy_(
            torch.tensor([[0.0, 0, 0, 0], [5, 0, 0, 0], [20, 0, 0, 0], [30, 0, 0, 0]])
        )
    config = [{"op_types": ["Linear"], "sparse_ratio": 0.25, "dependency_group_id": "d"}]
    masks = prune(two_linear, config).masks()
    assert kept_rows(masks["fc1"]["weight"]) == [False, True, True, True]
    assert kept_rows(masks["fc2"]["weight"]) == [False, True, True, True]


@pytest.mark.parametrize("metric", [None, ["l1"], 3])
def test_metric_of_the_wrong_type_is_a_clear_error(two_linear, metric):
    with pytest.raises(CompressionError) as info:
        prune(two_linear, [{"op_names": ["fc1"], "sparse_ratio": 0.5}], metric=metric)
    assert info.value.codes == ["P510"]


def test_model_and_calib_of_the_wrong_type_are_clear_errors(two_linear):
    with pytest.raises(CompressionError) as info:
        prune("model.pt", [{"op_names": ["fc1"], "sparse_ratio": 0.5}])
    assert info.value.codes == ["X803"] and "torch.nn.Module" in str(info.value)
    with pytest.raises(CompressionError) as info:
        prune(two_linear, [{"op_names": ["fc1"], "sparse_ratio": 0.5}], calib=5)
    assert info.value.codes == ["X803"] and "iterable of batches" in str(info.value)


def test_taylor_errors_for_frozen_parameters_and_non_scalar_losses(two_linear):
    config = [{"op_names": ["fc2"], "sparse_ratio": 0.5}]
    batches = [torch.randn(2, 4)]
    with pytest.raises(CompressionError) as info:
        prune(two_linear, config, "taylor", calib=batches, loss_fn=lambda m, b: m(b))
    assert info.value.codes == ["P507"] and "scalar" in str(info.value)
    two_linear.fc2.weight.requires_grad_(False)
    with pytest.raises(CompressionError) as info:
        prune(two_linear, config, "taylor", calib=batches, loss_fn=lambda m, b: m(b).sum())
    assert info.value.codes == ["P507"] and "requires_grad=False" in str(info.value)
    assert type(two_linear.fc2) is nn.Linear


def test_tied_weights_configured_twice_are_an_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].weight = model[0].weight
    with pytest.raises(CompressionError) as info:
        prune(model, [{"op_types": ["Linear"], "sparse_ratio": 0.5, "target_names": ["weight"]}])
    assert info.value.codes == ["T404"]
    assert "'1.weight' is the same tensor as '0.weight'" in str(info.value)


@pytest.mark.parametrize(
    "build, target, words",
    [
        (lambda: nn.BatchNorm1d(4), "running_mean", "is a buffer"),
        (lambda: torch.nn.utils.weight_norm(nn.Linear(4, 4)), "weight", "computed"),
    ],
)
def test_targets_that_are_not_parameters_are_errors(build, target, words):
    model = nn.Sequential(build())
    config = [
        {
            "op_names": ["0"],
            "target_names": [target],
            "target_settings": {target: {"sparse_ratio": 0.5}},
        }
    ]
    with pytest.raises(CompressionError) as info:
        prune(model, config)
    assert info.value.codes == ["T401"] and words in str(info.value)


def test_input_index_past_the_arguments_is_an_error(two_linear):
    align = {"module_name": None, "target_name": "weight", "dims": [1]}
    config = [
        {"op_names": ["fc1"], "sparse_ratio": 0.5, "target_names": ["weight"]},
        {
            "op_names": ["fc1"],
            "target_names": ["_input_3"],
            "target_settings": {"_input_3": {"align": align}},
        },
    ]
    with pytest.raises(CompressionError) as info:
        prune(two_linear, config)
    assert info.value.codes == ["T402"]
    assert "takes 1 positional argument" in str(info.value)


def test_a_failure_while_installing_rolls_everything_back(two_linear, monkeypatch):
    from torch.nn.utils import parametrize

    before = state_copy(two_linear)
    real = parametrize.register_parametrization
    calls = []

    def flaky(module, name, transform, unsafe=False):
        calls.append(name)
        if len(calls) == 3:
            raise RuntimeError("injected")
        return real(module, name, transform, unsafe=unsafe)

    monkeypatch.setattr(parametrize, "register_parametrization", flaky)
    with pytest.raises(RuntimeError, match="injected"):
        prune(two_linear, [{"op_types": ["Linear"], "sparse_ratio": 0.5}])
    assert type(two_linear.fc1) is nn.Linear and type(two_linear.fc2) is nn.Linear
    assert_same_state(two_linear, before)
    monkeypatch.undo()
    prune(two_linear, [{"op_types": ["Linear"], "sparse_ratio": 0.5}])


def test_masks_are_copies(two_linear):
    compression = prune(two_linear, [{"op_names": ["fc1"], "sparse_ratio": 0.5}])
    x = torch.ones(1, 4)
    before = two_linear(x)
    compression.masks()["fc1"]["weight"].zero_()
    assert torch.equal(two_linear(x), before)


def test_progress_is_reported_per_pruned_tensor():
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(3)])
    seen = []
    plan = build_plan(model, [{"op_types": ["Linear"], "sparse_ratio": 0.5}], "prune")
    run_plan(model, plan, progress=lambda done, total, label: seen.append((done, total, label)))
    assert seen == [(1, 3, "0.weight"), (2, 3, "1.weight"), (3, 3, "2.weight")]
