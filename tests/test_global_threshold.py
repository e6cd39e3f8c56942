"""The global group's radix-selected threshold equals the old sort + cumsum, bit for bit."""

from __future__ import annotations

import sys
import weakref
from pathlib import Path
from typing import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dsl_compress import prune
from dsl_compress.diagnostics import CompressionError
from dsl_compress.engine.global_threshold import weighted_threshold
from dsl_compress.engine.metrics import compute_metric
from dsl_compress.schema.granularity import parse_granularity

# The baseline the selection replaced is the benchmark's: one copy, measured and tested.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_global_threshold import sorted_threshold  # noqa: E402

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True)
Member = tuple[torch.Tensor, int]


def bits(value: torch.Tensor) -> int:
    """The float32's bit pattern, with the two choices the sort left open made canonical:
    a zero is +0.0 and a NaN is the default NaN."""
    if bool(value.isnan()):
        value = torch.tensor(float("nan"))
    return int((value + 0.0).view(torch.int32))


def of_bits(patterns: list[int]) -> torch.Tensor:
    return torch.tensor(patterns, dtype=torch.int64).to(torch.int32).view(torch.float32)


def bit_pattern(pattern: int) -> float:
    return float(of_bits([pattern])[0])


NEG_NAN, NAN_PAYLOAD, NEG_ZERO = 0xFFC00001, 0x7F800001, 0x80000000
SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.5, 0.5, float("inf"), -float("inf"), float("nan"), 1e-45]
SPECIAL += [-1e-45, 1.2e-38, 3.4e38, -3.4e38, bit_pattern(NEG_NAN), bit_pattern(NAN_PAYLOAD)]


@st.composite
def members(draw) -> list[Member]:
    """1-5 members of 0-3 dims: tied values from a small pool, any float32, or raw bit patterns
    (NaN payloads of both signs, subnormals), each with a grain up to 2^31."""
    found = []
    for _ in range(draw(st.integers(1, 5))):
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        size = torch.Size(shape).numel()
        kind = draw(st.sampled_from(["tied", "floats", "bits"]))
        if kind == "tied":
            values = torch.tensor(
                draw(st.lists(st.sampled_from(SPECIAL), min_size=size, max_size=size))
            )
        elif kind == "floats":
            floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
            values = torch.tensor(draw(st.lists(floats, min_size=size, max_size=size)))
        else:
            patterns = draw(st.lists(st.integers(0, 2**32 - 1), min_size=size, max_size=size))
            values = of_bits(patterns)
        grain = draw(st.sampled_from([1, 2, 4, 7, 2**20, 2**31]))
        found.append((values.to(torch.float32).reshape(shape), grain))
    return found


def one_at_a_time(group: list[Member], calls: list[int]) -> Iterator[Member]:
    """Fresh copies, each yielded only once the previous one has been released by the caller."""
    calls.append(1)
    previous = None
    for values, grain in group:
        assert previous is None or previous() is None, "two members alive at once"
        metric = values.clone()
        previous = weakref.ref(metric)
        yield metric, grain
        del metric


@PROPERTY
@given(members(), st.floats(0.0, 1.02))
def test_selection_equals_the_sort(group: list[Member], fraction: float) -> None:
    total = sum(m.numel() * g for m, g in group)
    if total == 0:
        return
    count = int(total * fraction)
    calls: list[int] = []
    found = weighted_threshold(lambda: one_at_a_time(group, calls), count)
    expected = sorted_threshold([m for m, _ in group], [g for _, g in group], count)
    assert found.dtype == torch.float32 and found.shape == ()
    assert bits(found) == bits(expected)
    assert 1 <= len(calls) <= 2


@PROPERTY
@given(members(), st.data())
def test_every_count_of_a_small_group(group: list[Member], data: st.DataObject) -> None:
    grains = [min(g, 3) for _, g in group]
    total = sum(m.numel() * g for (m, _), g in zip(group, grains))
    if total == 0:
        return
    count = data.draw(st.integers(0, total + 1))
    found = weighted_threshold(lambda: zip([m for m, _ in group], grains), count)
    assert bits(found) == bits(sorted_threshold([m for m, _ in group], grains, count))


def test_ties_negative_zero_and_nan_at_the_cut() -> None:
    values = torch.tensor([-0.0, 0.0, 0.0, -1.0, float("nan"), -float("nan"), float("inf")])
    group = [(values, 1), (torch.tensor([[0.0, -0.0]]), 3)]
    assert [bits(weighted_threshold(lambda: iter(group), c)) for c in range(14)] == [
        bits(sorted_threshold([values, group[1][0]], [1, 3], c)) for c in range(14)
    ]
    assert bits(weighted_threshold(lambda: iter(group), 1)) == 0  # +0.0, not -0.0
    assert bool(weighted_threshold(lambda: iter(group), 12).isnan())


def test_counts_beyond_float64_integers_stay_exact() -> None:
    """Weights add in int64: 2^54 + 1 is not a float64, yet the cut lands one entry over."""
    group = [(torch.tensor([1.0, 2.0]), 2**53), (torch.tensor([3.0]), 1)]
    metrics = [m for m, _ in group]
    for count in (2**54 - 1, 2**54, 2**54 + 1):
        found = weighted_threshold(lambda: iter(group), count)
        assert bits(found) == bits(sorted_threshold(metrics, [2**53, 1], count))
    assert float(weighted_threshold(lambda: iter(group), 2**54)) == 3.0


def test_subnormals_and_negatives_keep_their_order() -> None:
    values = of_bits([1, 2, 0x80000001, 0x80000002, 0x007FFFFF, 0x00800000])
    for count in range(7):
        found = weighted_threshold(lambda: iter([(values, 1)]), count)
        assert bits(found) == bits(sorted_threshold([values], [1], count))
    assert int(weighted_threshold(lambda: iter([(values, 1)]), 2).view(torch.int32)) == 1


def test_empty_members_are_skipped_and_the_first_member_names_the_device() -> None:
    group = [(torch.empty(0, 3), 5), (torch.tensor([4.0, 1.0]), 2), (torch.empty(0), 1)]
    found = weighted_threshold(lambda: iter(group), 2)
    assert float(found) == 4.0 and found.device == group[0][0].device


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_metrics_are_widened_exactly(dtype: torch.dtype) -> None:
    values = torch.tensor([0.1, -3.0, 7.5, 0.1, 65504.0]).to(dtype)
    for count in range(6):
        found = weighted_threshold(lambda: iter([(values, 1)]), count)
        assert bits(found) == bits(sorted_threshold([values.float()], [1], count))


@pytest.mark.parametrize(
    "group, count, text",
    [
        ([], 0, "no metric entries"),
        ([(torch.empty(0), 1)], 0, "no metric entries"),
        ([(torch.ones(2), 1)], -1, "count >= 0"),
        ([(torch.ones(2), 0)], 0, "positive int"),
        ([(torch.ones(2, dtype=torch.float64), 1)], 0, "float32"),
    ],
)
def test_bad_arguments_are_x803(group: list[Member], count: int, text: str) -> None:
    with pytest.raises(CompressionError) as info:
        weighted_threshold(lambda: iter(group), count)
    assert info.value.codes == ["X803"]
    assert text in str(info.value)


def test_a_nan_threshold_needs_one_pass_only() -> None:
    calls: list[int] = []
    group = [(torch.tensor([1.0, float("nan")]), 1)]
    assert bool(weighted_threshold(lambda: one_at_a_time(group, calls), 1).isnan())
    assert len(calls) == 1


class Stack(nn.Module):
    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.layers = nn.ModuleList(nn.Linear(8, 6) for _ in range(3))
        with torch.no_grad():
            for layer in self.layers:
                # few distinct values, so the cut falls inside ties
                layer.weight.copy_(torch.randint(-4, 5, (6, 8), generator=generator) / 4)
        self.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "metric, granularity", [("level", None), ("l1", "out_channel"), ("l2", [2, 4])]
)
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.8])
def test_global_masks_equal_the_sorted_thresholds(dtype, metric, granularity, ratio) -> None:
    """Through the mask stage: each member keeps what is >= the old code's threshold."""
    model = Stack(dtype)
    config = [{"op_types": ["Linear"], "sparse_ratio": ratio, "global_group_id": 0}]
    if granularity is not None:
        config[0]["granularity"] = granularity
    masks = prune(model, config, metric=metric).masks()
    kernel = parse_granularity(granularity)
    metrics = [compute_metric(metric, m.weight, kernel, subject="w") for m in model.layers]
    grains = [48 // m.numel() for m in metrics]
    threshold = sorted_threshold(metrics, grains, int(144 * ratio))
    for index, metric in enumerate(metrics):
        expected = metric >= threshold
        expected = expected if kernel is None else kernel.expand(expected, (6, 8), full=True)
        assert torch.equal(masks[f"layers.{index}"]["weight"], expected.expand(6, 8))
