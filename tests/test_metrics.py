"""Pruning metrics on tiny tensors, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from dsl_compress.diagnostics import CompressionError
from dsl_compress.schema.granularity import parse_granularity
from dsl_compress.engine.metrics import METRIC_NAMES, compute_metric

FC1 = torch.tensor([[1.0, 2, 3, 4], [-5, 6, 7, 8], [0.1, 0.2, 0.3, 0.4], [9, 10, 11, 12]])
OUT = parse_granularity("out_channel")


def metric(name: str, tensor: torch.Tensor = FC1, granularity: object = "out_channel", **kw):
    return compute_metric(name, tensor, parse_granularity(granularity), subject="fc1.weight", **kw)


def test_metric_names() -> None:
    assert METRIC_NAMES == ("level", "l1", "l2", "fpgm", "random", "taylor")


@pytest.mark.parametrize("name", ["level", "l1"])
def test_l1_per_row(name: str) -> None:
    assert torch.equal(metric(name), torch.tensor([[10.0], [26.0], [1.0], [42.0]]))


@pytest.mark.parametrize("name", ["level", "l1"])
def test_l1_rounds_as_nni_norm(name: str) -> None:
    """NNI reduces with t.norm(p=1); abs().sum() rounds most long rows differently."""
    wide = torch.empty(64, 1024).uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    nni = wide.norm(p=1, dim=-1, keepdim=True)
    assert not torch.equal(wide.abs().sum(dim=-1, keepdim=True), nni)
    assert torch.equal(metric(name, wide), nni)


@pytest.mark.parametrize("name", ["level", "l1", "l2"])
def test_element_wise_metric_is_abs(name: str) -> None:
    assert torch.equal(metric(name, granularity=None), FC1.abs())


def test_l2_per_row() -> None:
    expected = torch.tensor([[30.0], [174.0], [0.3], [446.0]]).sqrt()
    assert torch.allclose(metric("l2"), expected)


def test_l1_in_channel_sums_columns() -> None:
    expected = torch.tensor([[15.1, 18.2, 21.3, 24.4]])
    assert torch.allclose(metric("l1", granularity="in_channel"), expected)


def test_l1_two_by_two_blocks() -> None:
    tensor = torch.arange(16.0).reshape(4, 4)
    expected = torch.tensor(
        [[0.0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]]
    )
    assert torch.equal(metric("l1", tensor, [2, 2]), expected)


def test_conv_out_channel_metric_keeps_rank() -> None:
    conv = torch.ones(4, 2, 2, 2)
    assert metric("l1", conv).shape == (4, 1, 1, 1)
    assert torch.equal(metric("l1", conv).flatten(), torch.full((4,), 8.0))


def naive_fpgm(blocks: list[torch.Tensor]) -> list[float]:
    """Sum of Euclidean distances from each block to every block, written out longhand."""
    sums = []
    for a in blocks:
        total = 0.0
        for b in blocks:
            total += math.sqrt(sum((x - y) ** 2 for x, y in zip(a.tolist(), b.tolist())))
        sums.append(total)
    return sums


def test_fpgm_rows_match_naive_formula() -> None:
    expected = naive_fpgm(list(FC1))
    assert torch.allclose(metric("fpgm").flatten(), torch.tensor(expected))
    # row 0: sqrt(84) + sqrt(24.3) + sqrt(256)
    assert metric("fpgm")[0, 0].item() == pytest.approx(math.sqrt(84) + math.sqrt(24.3) + 16)


def test_fpgm_two_by_two_blocks_match_naive_formula() -> None:
    tensor = torch.tensor([[1.0, 0, 2, 2], [0, 1, 2, 2], [3, 3, -1, 0], [3, 3, 0, -1]])
    blocks = [tensor[r : r + 2, c : c + 2].flatten() for r in (0, 2) for c in (0, 2)]
    expected = torch.tensor(naive_fpgm(blocks)).reshape(2, 2)
    assert torch.allclose(metric("fpgm", tensor, [2, 2]), expected)


def test_fpgm_needs_a_granularity() -> None:
    with pytest.raises(CompressionError) as info:
        metric("fpgm", granularity=None)
    assert info.value.codes == ["P507"]
    assert "fine-grained" in str(info.value)
    assert "fc1.weight" in str(info.value)


def test_random_is_reproducible_per_seed() -> None:
    first = metric("random", generator=torch.Generator().manual_seed(7))
    again = metric("random", generator=torch.Generator().manual_seed(7))
    other = metric("random", generator=torch.Generator().manual_seed(8))
    assert first.shape == (4, 1) and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert bool(((first >= 0) & (first < 1)).all())


def test_random_element_wise_has_tensor_shape() -> None:
    values = metric("random", granularity=None, generator=torch.Generator().manual_seed(0))
    assert values.shape == FC1.shape


def test_taylor_sums_the_score_per_block() -> None:
    score = torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 2], [3, 0, 0, 0], [0.5, 0.5, 0, 0]])
    assert torch.equal(metric("taylor", score=score).flatten(), torch.tensor([4.0, 2, 3, 1]))
    assert torch.equal(metric("taylor", granularity=None, score=score), score)


def test_taylor_without_score_is_an_error() -> None:
    with pytest.raises(CompressionError) as info:
        metric("taylor")
    assert info.value.codes == ["P507"]


def test_taylor_score_shape_must_match() -> None:
    with pytest.raises(CompressionError) as info:
        metric("taylor", score=torch.ones(2, 2))
    assert info.value.codes == ["P507"]
    assert "[2, 2]" in str(info.value)


def test_unknown_metric_suggests_a_name() -> None:
    with pytest.raises(CompressionError) as info:
        metric("fgpm")
    assert info.value.codes == ["P510"]
    assert "'fpgm'" in info.value.diagnostics[0].hint


def test_half_tensor_gives_float32_metric() -> None:
    values = metric("l2", FC1.half())
    assert values.dtype == torch.float32
    assert values.device == FC1.device


def test_kernel_longer_than_rank_is_p501() -> None:
    with pytest.raises(CompressionError) as info:
        metric("l1", torch.ones(4), [1, 1])
    assert info.value.codes == ["P501"]


def test_metric_does_not_track_gradients() -> None:
    weight = FC1.clone().requires_grad_(True)
    assert not metric("l1", weight).requires_grad
