"""Mask generation on tiny tensors: NNI's worked examples, our documented deviations, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dsl_compress.diagnostics import CompressionError
from dsl_compress.schema.granularity import parse_granularity
from dsl_compress.vocab import TargetKind
from dsl_compress.engine.metrics import compute_metric
from dsl_compress.engine.mask_request import MaskRequest
from dsl_compress.engine.masks import generate_masks

FC1 = torch.tensor([[1.0, 2, 3, 4], [-5, 6, 7, 8], [0.1, 0.2, 0.3, 0.4], [9, 10, 11, 12]])
# rows sum to [26, 10, 6, 22]
FC2 = torch.tensor([[5.0, 6, 7, 8], [1, 2, 3, 4], [0, 1, 2, 3], [4, 5, 6, 7]])
T, F = True, False


def weight(module: str, tensor: torch.Tensor, metric: str = "l1", **setting: Any) -> MaskRequest:
    """An active (or not) parameter target; the granularity defaults to out_channel."""
    setting.setdefault("granularity", "out_channel")
    kernel = parse_granularity(setting["granularity"])
    active = setting.get("sparse_ratio") is not None or setting.get("sparse_threshold") is not None
    in_group = any(setting.get(k) is not None for k in ("global_group_id", "dependency_group_id"))
    values = None
    if active or in_group:
        values = compute_metric(metric, tensor, kernel, subject=module)
    name = setting.pop("target", "weight")
    return MaskRequest(module, name, TargetKind.PARAMETER, setting, tuple(tensor.shape), values)


def aligned(
    module: str,
    target: str,
    shape: tuple[int, ...] | None,
    source: str = "weight",
    dims: list[int] | None = None,
    source_module: str | None = None,
    granularity: Any = None,
) -> MaskRequest:
    align = {"module_name": source_module, "target_name": source, "dims": dims or [0]}
    setting = {"align": align, "apply_method": "mul", "granularity": granularity}
    return MaskRequest(module, target, TargetKind.of(target), setting, shape)


def rows(mask: torch.Tensor) -> list[bool]:
    """Per dim-0 index: kept (all True), pruned (all False); mixed rows fail the test."""
    flat = mask.reshape(mask.shape[0], -1)
    assert bool((flat.all(dim=1) | ~flat.any(dim=1)).all()), "row is partly pruned"
    return flat.all(dim=1).tolist()


def raises(requests: list[MaskRequest]) -> CompressionError:
    with pytest.raises(CompressionError) as info:
        generate_masks(requests)
    return info.value


# NNI 3.0 worked example 4.4: fc1 row L1 metrics [10, 26, 1, 42].
@pytest.mark.parametrize(
    "setting, kept",
    [
        ({"sparse_ratio": 0.5}, [F, T, F, T]),
        ({"sparse_ratio": 0.3}, [T, T, F, T]),
        ({"sparse_threshold": 10.0}, [T, T, F, T]),
        ({"sparse_threshold": 100.0, "max_sparse_ratio": 0.5}, [F, T, F, T]),
        ({"sparse_threshold": 0.0, "min_sparse_ratio": 0.5}, [F, T, F, T]),
    ],
)
def test_nni_ratio_and_threshold_examples(setting: dict[str, Any], kept: list[bool]) -> None:
    masks = generate_masks([weight("fc1", FC1, **setting), aligned("fc1", "bias", (4,))])
    assert masks[("fc1", "weight")].shape == (4, 4)
    assert masks[("fc1", "weight")].dtype == torch.bool
    assert rows(masks[("fc1", "weight")]) == kept
    assert masks[("fc1", "bias")].tolist() == kept


def test_level_counts_elements_and_floors() -> None:
    masks = generate_masks([weight("fc1", FC1, "level", granularity=None, sparse_ratio=0.3)])
    mask = masks[("fc1", "weight")]
    assert int((~mask).sum()) == 4  # floor(16 * 0.3)
    assert mask[2].tolist() == [F, F, F, F]


@pytest.mark.parametrize(
    "setting, pruned",
    [
        ({"sparse_ratio": 0.0}, 0),
        ({"sparse_ratio": 1.0}, 4),
        ({"sparse_ratio": 1.5}, 4),
        ({"sparse_ratio": 0.9, "max_sparse_ratio": 0.5}, 2),
        ({"sparse_ratio": 0.1, "min_sparse_ratio": 0.5}, 2),
        ({"sparse_ratio": 0.75, "max_sparse_ratio": 0.0}, 3),  # a falsy max is unset
    ],
)
def test_ratio_is_clamped_by_min_and_max(setting: dict[str, Any], pruned: int) -> None:
    mask = generate_masks([weight("fc1", FC1, **setting)])[("fc1", "weight")]
    assert rows(mask).count(False) == pruned


def test_threshold_keeps_equal_values_per_element() -> None:
    mask = generate_masks([weight("fc1", FC1, "level", granularity=None, sparse_threshold=4.0)])
    # |w| < 4: 1, 2, 3 and the four 0.x entries; 4 itself is kept
    assert int((~mask[("fc1", "weight")]).sum()) == 7


def test_global_group_example() -> None:
    masks = generate_masks(
        [
            weight("fc1", FC1, sparse_ratio=0.5, global_group_id=1),
            weight("fc2", FC2, sparse_ratio=0.5, global_group_id=1),
        ]
    )
    assert rows(masks[("fc1", "weight")]) == [F, T, F, T]
    assert rows(masks[("fc2", "weight")]) == [T, F, F, T]


def test_global_group_ratio_one_prunes_everything() -> None:
    """NNI prunes nothing here (unset max read as 0.0); we prune everything."""
    masks = generate_masks(
        [
            weight("fc1", FC1, sparse_ratio=1.0, global_group_id="g"),
            weight("fc2", FC2, sparse_ratio=1.0, global_group_id="g"),
        ]
    )
    assert not masks[("fc1", "weight")].any()
    assert not masks[("fc2", "weight")].any()


def test_global_group_beyond_max_uses_each_max() -> None:
    masks = generate_masks(
        [
            weight("fc1", FC1, sparse_ratio=0.9, max_sparse_ratio=0.5, global_group_id=1),
            weight("fc2", FC2, sparse_ratio=0.9, max_sparse_ratio=0.25, global_group_id=1),
        ]
    )
    assert rows(masks[("fc1", "weight")]) == [F, T, F, T]
    assert rows(masks[("fc2", "weight")]) == [T, T, F, T]


def test_global_group_below_min_uses_each_min() -> None:
    masks = generate_masks(
        [
            weight("fc1", FC1, sparse_ratio=0.1, min_sparse_ratio=0.5, global_group_id=1),
            weight("fc2", FC2, sparse_ratio=0.1, min_sparse_ratio=0.25, global_group_id=1),
        ]
    )
    assert rows(masks[("fc1", "weight")]) == [F, T, F, T]
    assert rows(masks[("fc2", "weight")]) == [T, T, F, T]


def test_global_group_weighs_entries_by_block_size() -> None:
    """fc1 rows weigh 4 elements, the 1-D tensor's entries 1: k = floor(20 * 0.5) = 10."""
    vector = torch.tensor([3.0, 0.5, 20.0, 50.0])
    masks = generate_masks(
        [
            weight("fc1", FC1, sparse_ratio=0.5, global_group_id=1),
            weight("v", vector, "level", granularity=None, sparse_ratio=0.5, global_group_id=1),
        ]
    )
    # ascending: 0.5(1) 1(4) 3(1) 10(4) -> 10 elements pruned; 20 is the threshold
    assert rows(masks[("fc1", "weight")]) == [F, T, F, T]
    assert masks[("v", "weight")].tolist() == [F, F, T, T]


def test_global_group_keeps_ties_at_the_threshold() -> None:
    tied = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [10, 10, 10, 10]])
    mask = generate_masks([weight("fc1", tied, sparse_ratio=0.5, global_group_id=1)])
    assert rows(mask[("fc1", "weight")]) == [T, T, T, T]


def test_global_group_with_different_ratios_is_p505() -> None:
    error = raises(
        [
            weight("fc1", FC1, sparse_ratio=0.5, global_group_id=1),
            weight("fc2", FC2, sparse_ratio=0.6, global_group_id=1),
        ]
    )
    assert error.codes == ["P505"]
    for part in ("fc1.weight=0.5", "fc2.weight=0.6"):
        assert part in str(error)


def test_global_group_without_a_ratio_is_p505() -> None:
    error = raises([weight("fc1", FC1, global_group_id=1)])
    assert error.codes == ["P505"]
    assert "fc1.weight" in str(error)


def test_dependency_group_example() -> None:
    """Mean metric [18, 18, 3.5, 32]: NNI (torch topk) pruned rows {1, 2}; the same here."""
    masks = generate_masks(
        [
            weight("fc1", FC1, sparse_ratio=0.5, dependency_group_id="d"),
            weight("fc2", FC2, sparse_ratio=0.5, dependency_group_id="d"),
        ]
    )
    assert rows(masks[("fc1", "weight")]) == [T, F, F, T]
    assert rows(masks[("fc2", "weight")]) == [T, F, F, T]


def test_dependency_group_internal_metric_blocks() -> None:
    masks = generate_masks(
        [
            weight("fc1", FC1, sparse_ratio=0.5, dependency_group_id="d", internal_metric_block=2),
            weight("fc2", FC2, sparse_ratio=0.5, dependency_group_id="d"),
        ]
    )
    assert rows(masks[("fc1", "weight")]) == [F, T, F, T]
    assert rows(masks[("fc2", "weight")]) == [F, T, F, T]


def test_stages_multiply_threshold_and_dependency() -> None:
    masks = generate_masks(
        [
            weight("fc1", FC1, sparse_threshold=20.0, dependency_group_id="d"),
            weight("fc2", FC2, sparse_ratio=0.25, dependency_group_id="d"),
        ]
    )
    assert rows(masks[("fc1", "weight")]) == [F, T, F, T]
    assert rows(masks[("fc2", "weight")]) == [T, T, F, T]


@pytest.mark.parametrize(
    "second, code, text",
    [
        ({"sparse_ratio": 0.6}, "P506", "fc2.weight=0.6"),
        ({"sparse_ratio": 0.5, "granularity": [1, 1]}, "P506", "[4, 4]"),
        ({"sparse_ratio": 0.5, "internal_metric_block": 3}, "P506", "does not divide"),
        ({"sparse_ratio": 0.5, "internal_metric_block": 1.5}, "P506", "positive int"),
    ],
)
def test_dependency_group_errors(second: dict[str, Any], code: str, text: str) -> None:
    error = raises(
        [
            weight("fc1", FC1, sparse_ratio=0.5, dependency_group_id="d"),
            weight("fc2", FC2, dependency_group_id="d", **second),
        ]
    )
    assert error.codes == [code]
    assert text in str(error)


def test_dependency_member_without_metric_is_p506() -> None:
    member = MaskRequest("fc2", "weight", TargetKind.PARAMETER, {"dependency_group_id": 1}, (4, 4))
    error = raises([weight("fc1", FC1, sparse_ratio=0.5, dependency_group_id=1), member])
    assert error.codes == ["P506"]
    assert "fc2.weight" in str(error)


# Granularity shapes, NNI table 3.3: metric (block) shapes and block-constant full masks.
@pytest.mark.parametrize(
    "granularity, conv, linear, embedding",
    [
        ("out_channel", (4, 1, 1, 1), (4, 1), (5, 1)),
        ("in_channel", (1, 2, 1, 1), (1, 6), (1, 6)),
        ([1, -1], (4, 2, 2, 1), (4, 1), (5, 1)),
        ([-1, 1], (4, 2, 1, 2), (1, 6), (1, 6)),
        ([[1], "back"], (4, 2, 2, 2), (4, 6), (5, 6)),
        ([[1], "back", -1], (4, 1, 1, 1), (4, 1), (5, 1)),
        ([2, 2], (4, 2, 1, 1), (2, 3), None),
        ([1, 2, 1, 1], (4, 1, 2, 2), None, None),
    ],
)
def test_granularity_block_shapes(granularity: Any, conv: Any, linear: Any, embedding: Any) -> None:
    for shape, expected in (((4, 2, 2, 2), conv), ((4, 6), linear), ((5, 6), embedding)):
        tensor = torch.arange(float(torch.Size(shape).numel())).reshape(shape)
        if expected is None:
            with pytest.raises(CompressionError) as info:
                weight("m", tensor, granularity=granularity, sparse_ratio=0.5)
            assert info.value.codes == ["P501"]
            continue
        request = weight("m", tensor, granularity=granularity, sparse_ratio=0.5)
        assert tuple(request.metric.shape) == expected
        mask = generate_masks([request])[("m", "weight")]
        blocks = torch.Size(expected).numel()
        assert mask.shape == shape
        assert int((~mask).sum()) == (blocks // 2) * (tensor.numel() // blocks)


def test_align_chain_bn_bias_to_bn_weight_to_conv_weight() -> None:
    conv = torch.tensor([1.0, 20, 3, 40]).reshape(4, 1, 1, 1).repeat(1, 2, 1, 1)
    masks = generate_masks(
        [
            aligned("bn", "bias", (4,)),  # listed before its source: order is resolved
            aligned("bn", "weight", (4,), source_module="conv"),
            weight("conv", conv, sparse_ratio=0.5),
        ]
    )
    assert rows(masks[("conv", "weight")]) == [F, T, F, T]
    assert masks[("bn", "weight")].tolist() == [F, T, F, T]
    assert masks[("bn", "bias")].tolist() == [F, T, F, T]


def test_align_over_all_dims_masks_a_1d_bias() -> None:
    """NNI's empty-dims sum leaves a BN bias all ones; we copy the weight mask."""
    bn_weight = torch.tensor([0.5, 2.0, 0.1, 3.0])
    masks = generate_masks([weight("bn", bn_weight, sparse_ratio=0.5), aligned("bn", "bias", (4,))])
    assert masks[("bn", "weight")].tolist() == [F, T, F, T]
    assert masks[("bn", "bias")].tolist() == [F, T, F, T]


def test_in_channel_weight_leaves_bias_all_kept() -> None:
    masks = generate_masks(
        [
            weight("fc1", FC1, granularity="in_channel", sparse_ratio=0.5),
            aligned("fc1", "bias", (4,)),
        ]
    )
    assert masks[("fc1", "weight")][:, 0].tolist() == [F, F, F, F]
    assert masks[("fc1", "bias")].tolist() == [T, T, T, T]


def test_align_cycle_is_p504() -> None:
    error = raises([aligned("m", "a", (4,), source="b"), aligned("m", "b", (4,), source="a")])
    assert error.codes == ["P504"]
    assert "m.a" in str(error) and "m.b" in str(error)


def test_align_to_a_maskless_source_is_p503() -> None:
    error = raises([weight("fc1", FC1), aligned("fc1", "bias", (4,))])
    assert error.codes == ["P503"]
    assert "fc1.bias is aligned to fc1.weight, which gets no mask" in str(error)


def test_output_without_granularity_keeps_broadcast_shape() -> None:
    masks = generate_masks(
        [weight("fc1", FC1, sparse_ratio=0.5), aligned("fc1", "_output_0", (2, 4))]
    )
    assert masks[("fc1", "_output_0")].tolist() == [F, T, F, T]


def test_output_per_channel_is_stored_broadcastable() -> None:
    masks = generate_masks(
        [
            weight("fc1", FC1, sparse_ratio=0.5),
            aligned("fc1", "_output_0", (2, 4), granularity="per_channel"),
        ]
    )
    assert masks[("fc1", "_output_0")].tolist() == [[F, T, F, T]]


def test_output_per_channel_on_sequence_axis_is_p509() -> None:
    error = raises(
        [
            weight("fc1", FC1, sparse_ratio=0.5),
            aligned("fc1", "_output_0", (2, 3, 4), granularity="per_channel"),
        ]
    )
    assert error.codes == ["P509"]
    for part in ("fc1._output_0", "[4]", "[2, 3, 4]"):
        assert part in str(error)


def test_output_with_granularity_and_unknown_shape_is_p509() -> None:
    error = raises(
        [
            weight("fc1", FC1, sparse_ratio=0.5),
            aligned("fc1", "_output_0", None, granularity="per_channel"),
        ]
    )
    assert error.codes == ["P509"]
    assert "not observed" in str(error)


def test_aligned_mask_fills_coarser_blocks_when_any_element_kept() -> None:
    conv = torch.tensor([1.0, 2, 30, 40]).reshape(4, 1)
    masks = generate_masks(
        [
            weight("conv", conv, sparse_ratio=0.25),
            aligned("bn", "weight", (4,), source_module="conv", granularity=[2]),
        ]
    )
    assert rows(masks[("conv", "weight")]) == [F, T, T, T]
    assert masks[("bn", "weight")].tolist() == [T, T, T, T]


def test_aligned_mask_that_does_not_broadcast_is_p509() -> None:
    error = raises([weight("fc1", FC1, sparse_ratio=0.5), aligned("fc1", "bias", (3,))])
    assert error.codes == ["P509"]
    assert "fc1.bias" in str(error) and "[3]" in str(error)


def test_align_dims_out_of_range_is_p509() -> None:
    error = raises([weight("fc1", FC1, sparse_ratio=0.5), aligned("fc1", "bias", (4,), dims=[2])])
    assert error.codes == ["P509"]


@pytest.mark.parametrize("key", ["sparse_ratio", "sparse_threshold", "global_group_id"])
def test_activity_on_activation_is_p508(key: str) -> None:
    request = MaskRequest("fc1", "_output_0", TargetKind.OUTPUT, {key: 0.5}, (2, 4))
    error = raises([request])
    assert error.codes == ["P508"]
    assert "fc1._output_0" in str(error)


def test_ratio_target_without_metric_is_p507() -> None:
    request = MaskRequest("fc1", "weight", TargetKind.PARAMETER, {"sparse_ratio": 0.5}, (4, 4))
    error = raises([request])
    assert error.codes == ["P507"]
    assert "fc1.weight" in str(error)


def test_targets_fitting_no_stage_get_no_mask() -> None:
    masks = generate_masks([weight("fc1", FC1, sparse_ratio=0.5), weight("fc2", FC2)])
    assert set(masks) == {("fc1", "weight")}


def test_duplicate_request_is_rejected() -> None:
    error = raises([weight("fc1", FC1, sparse_ratio=0.5), weight("fc1", FC1, sparse_ratio=0.5)])
    assert error.codes == ["X803"]


def test_parameter_masks_never_share_storage() -> None:
    """A bias aligned over all dims gets its weight's very mask; each must be its own copy."""
    bn_weight = torch.tensor([0.5, 2.0, 0.1, 3.0])
    masks = generate_masks([weight("bn", bn_weight, sparse_ratio=0.5), aligned("bn", "bias", (4,))])
    bias, weight_mask = masks[("bn", "bias")], masks[("bn", "weight")]
    assert bias.untyped_storage().data_ptr() != weight_mask.untyped_storage().data_ptr()
    bias[0] = True
    assert weight_mask.tolist() == [F, T, F, T]


def test_level_on_a_long_tensor_prunes_what_topk_prunes() -> None:
    """Long element-wise metrics take the sampled selection; the mask is NNI's topk mask."""
    tensor = torch.randn(512, 300, generator=torch.Generator().manual_seed(1))
    masks = generate_masks([weight("fc", tensor, "level", granularity=None, sparse_ratio=0.3)])
    metric = tensor.abs().reshape(-1)
    pruned = metric.topk(int(metric.numel() * 0.3), largest=False).indices
    expected = torch.ones_like(metric, dtype=torch.bool).scatter(0, pruned, False)
    assert torch.equal(masks[("fc", "weight")], expected.reshape(tensor.shape))


def test_align_misfit_is_p509_even_when_the_reduced_mask_is_one_value() -> None:
    # out_channel keeps dim 1 whole, so the raw mask is [4, 1] and reduced over dim 0 it is a
    # single value; the weight's dim 1 still has 2 entries where the bias has 4 blocks.
    source = torch.arange(8.0).reshape(4, 2)
    error = raises(
        [
            weight("fc", source, sparse_ratio=0.5),
            aligned("fc", "bias", (4,), dims=[1], granularity="out_channel"),
        ]
    )
    assert error.codes == ["P509"]
    assert "fc.bias (shape [4], granularity blocks [4])" in str(error)
    assert "of size [2] there" in str(error)


def test_every_settings_error_of_the_mask_stage_comes_at_once() -> None:
    error = raises(
        [
            weight("fc1", FC1, sparse_ratio=0.5, global_group_id="g"),
            weight("fc2", FC2, sparse_ratio=0.25, global_group_id="g"),
            aligned("fc3", "bias", (4,)),
            aligned("fc4", "bias", (4,)),
            MaskRequest("fc1", "_output_0", TargetKind.OUTPUT, {"sparse_ratio": 0.5}, (2, 4)),
        ]
    )
    assert sorted(error.codes) == ["P503", "P503", "P505", "P508"]
