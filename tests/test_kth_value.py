"""kth_smallest: the same value as torch.kthvalue, on rows long enough to be narrowed by a sample."""

from __future__ import annotations

import pytest
import torch

from dsl_compress.engine.metrics import KTH_MIN_NARROWED, KTH_SAMPLE, kth_smallest

N = 1 << 17


def _rows(name: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    uniform = torch.rand(N, generator=gen)
    if name == "uniform":
        return uniform
    if name == "sorted":
        return uniform.sort().values
    if name == "reversed":
        return uniform.sort().values.flip(0)
    if name == "ties":
        return torch.randint(0, 5, (N,), generator=gen).float()
    if name == "signed":
        return torch.randn(N, generator=gen)
    if name == "some nan":
        return torch.randn(N, generator=gen).index_fill(0, torch.arange(0, N, 7), float("nan"))
    if name == "half nan":
        return torch.randn(N, generator=gen).index_fill(0, torch.arange(N // 2), float("nan"))
    if name == "signed zeros":
        return torch.zeros(N).index_fill(0, torch.arange(0, N, 3), -0.0)
    if name == "float64 row":
        return torch.randn(1, N, generator=gen, dtype=torch.float64)
    if name == "several rows":
        return torch.randn(3, N, generator=gen)
    if name == "short row":
        return torch.randn(KTH_MIN_NARROWED - 1, generator=gen)
    # The strided sample sees only the planted zeros, so it brackets the wrong place.
    return uniform.index_fill(0, torch.arange(0, N, N // KTH_SAMPLE), 0.0)


NAMES = (
    "uniform",
    "sorted",
    "reversed",
    "ties",
    "signed",
    "some nan",
    "half nan",
    "signed zeros",
    "float64 row",
    "several rows",
    "short row",
    "unrepresentative sample",
)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("share", (0.0, 0.001, 0.3, 0.5, 0.999, 1.0))
def test_same_value_as_kthvalue(name: str, share: float) -> None:
    rows = _rows(name)
    k = min(rows.shape[-1], max(1, int(rows.shape[-1] * share)))
    ours = kth_smallest(rows, k)
    theirs = rows.kthvalue(k, dim=-1, keepdim=True).values
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    both_nan = ours.isnan() & theirs.isnan()
    assert bool(((ours == theirs) | both_nan).all())


def test_a_sample_that_misses_falls_back_to_kthvalue(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(torch.Tensor, "kthvalue", _spy(torch.Tensor.kthvalue, calls))
    rows = _rows("unrepresentative sample")
    assert float(kth_smallest(rows, N // 2)) == float(rows.kthvalue(N // 2).values)
    assert N in calls  # the whole row was selected on


def test_a_representative_sample_never_selects_on_the_whole_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    monkeypatch.setattr(torch.Tensor, "kthvalue", _spy(torch.Tensor.kthvalue, calls))
    kth_smallest(_rows("uniform"), N // 2)
    assert calls and max(calls) < N // 4


def _spy(kthvalue, calls: list[int]):
    def spy(self, *args, **kwargs):
        calls.append(self.shape[-1])
        return kthvalue(self, *args, **kwargs)

    return spy
