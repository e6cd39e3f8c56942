"""The k-th smallest value of each row: torch.kthvalue, narrowed first by a sample on long rows."""

from __future__ import annotations

import math

import torch

# Rows at least this long are narrowed by a sample before the exact selection.
MIN_NARROWED = 1 << 16
SAMPLE = 1 << 14
# Half-width of the sampled window around the k-th position, in standard deviations of
# that position's sample estimate: wide enough that the fallback almost never runs.
WINDOW_SIGMAS = 6.0


def kth_smallest(rows: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th smallest value (1-based) along the last dim, that dim kept with size 1.

    Equal to ``rows.kthvalue(k, dim=-1, keepdim=True).values`` as a value (NaN ranks
    largest). torch.kthvalue copies and partitions the whole row; on one long row a strided
    sample brackets the k-th value instead, two comparisons count what lies below and pick
    what lies inside, and kthvalue runs on the few inside. If the sample misses, kthvalue
    runs on the whole row.
    """
    one_row = rows.dim() > 0 and rows.numel() == rows.shape[-1]
    found = _narrowed(rows.reshape(-1), k) if one_row and rows.numel() >= MIN_NARROWED else None
    if found is None:
        return rows.kthvalue(k, dim=-1, keepdim=True).values
    return found.reshape((1,) * rows.dim())


def _narrowed(values: torch.Tensor, k: int) -> torch.Tensor | None:
    low, high = _sample_bracket(values, k)
    below = values < low
    count_below = int(torch.count_nonzero(below))
    inside = values[(values <= high).logical_and_(below.logical_not_())]
    if not count_below < k <= count_below + inside.numel():
        return None
    return inside.kthvalue(k - count_below).values


def _sample_bracket(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sample values that very likely lie either side of the k-th smallest value."""
    sample = values[:: max(1, values.numel() // SAMPLE)]
    size = sample.numel()
    share = k / values.numel()
    centre = share * size
    half = WINDOW_SIGMAS * math.sqrt(size * share * (1.0 - share)) + 1.0
    first = min(size, max(1, math.floor(centre - half)))
    last = min(size, max(1, math.ceil(centre + half)))
    return sample.kthvalue(first).values, sample.kthvalue(last).values
