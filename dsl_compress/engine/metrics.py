"""Pruning metrics as NNI 3.0 computes them, and the k-th smallest metric value a ratio cuts at."""

from __future__ import annotations

import math
from typing import Callable

import torch

from dsl_compress.diagnostics import did_you_mean, fail
from dsl_compress.schema.granularity import BlockKernel
from dsl_compress.vocab import METRIC_NAMES

# Distances held at once while computing FPGM: bounds memory on tensors with many blocks.
_FPGM_CHUNK_ENTRIES = 1 << 24

RowReducer = Callable[[torch.Tensor], torch.Tensor]


def compute_metric(
    name: str,
    tensor: torch.Tensor,
    kernel: BlockKernel | None,
    *,
    subject: str,
    score: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The float32 metric of ``tensor`` in its keepdim block shape (full shape without a kernel).

    ``level`` and ``l1`` sum |w| per block, ``l2`` takes the L2 norm per block; without a
    kernel all three are |w|, as in NNI. ``fpgm`` scores each block by its summed L2 distance
    to every other block of the tensor. ``random`` draws uniform values from ``generator``.
    ``taylor`` sums the accumulated ``score`` ((w*grad)^2 / steps) per block.
    """
    if name not in METRIC_NAMES:
        fail(
            "P510",
            f"unknown pruning metric {name!r}",
            subject=subject,
            hint=did_you_mean(name, METRIC_NAMES) or f"use one of {', '.join(METRIC_NAMES)}",
        )
    data = tensor.detach().to(torch.float32)
    if name == "random":
        return _random_metric(data, kernel, subject, generator)
    if name == "taylor":
        data = _taylor_score(data, score, subject)
    if name == "fpgm":
        if kernel is None:
            fail(
                "P507",
                "FPGM metric does not support a fine-grained (element-wise) sparse pattern",
                subject=subject,
                hint="give a granularity such as 'out_channel' so FPGM compares whole blocks",
            )
        return _block_metric(data, kernel, _fpgm_rows, subject)
    if kernel is None:
        return data.abs()
    reducer = _l2_rows if name == "l2" else _l1_rows
    return _block_metric(data, kernel, reducer, subject)


def _taylor_score(data: torch.Tensor, score: torch.Tensor | None, subject: str) -> torch.Tensor:
    if score is None:
        fail(
            "P507",
            "the taylor metric needs an accumulated (w*grad)^2 score, and none was collected",
            subject=subject,
            hint="run the training steps that collect gradients before generating masks",
        )
    if tuple(score.shape) != tuple(data.shape):
        fail(
            "P507",
            f"the taylor score has shape {list(score.shape)} but the tensor has shape "
            f"{list(data.shape)}",
            subject=subject,
        )
    return score.detach().to(device=data.device, dtype=torch.float32)


def _random_metric(
    data: torch.Tensor,
    kernel: BlockKernel | None,
    subject: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    shape = kernel.block_shape(data.shape, subject) if kernel is not None else tuple(data.shape)
    device = generator.device if generator is not None else data.device
    values = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    return values.to(data.device)


def _block_metric(
    data: torch.Tensor, kernel: BlockKernel, reduce_rows: RowReducer, subject: str
) -> torch.Tensor:
    """Reduce each block with ``reduce_rows`` over a [..., block elements] view, as NNI lays it out.

    A tensor with no elements has no block or only empty ones, whose norms and distances are 0.
    """
    if data.numel() == 0:
        return data.new_zeros(kernel.block_shape(data.shape, subject))

    def reduce(split: torch.Tensor, inner: tuple[int, ...]) -> torch.Tensor:
        outer = [d for d in range(split.dim()) if d not in inner]
        sizes = [split.shape[d] for d in outer]
        rows = split.permute(*outer, *inner).reshape(-1, _numel(split.shape, inner))
        return reduce_rows(rows).reshape(sizes)

    return kernel.shrink(data, reduce, subject)


def _numel(shape: torch.Size, dims: tuple[int, ...]) -> int:
    count = 1
    for d in dims:
        count *= shape[d]
    return count


def _l1_rows(rows: torch.Tensor) -> torch.Tensor:
    # NNI's own reduction (t.norm(p=1)): bit-identical to it, where abs().sum() rounds
    # differently, and one fused pass with no |rows| temporary.
    return torch.linalg.vector_norm(rows, ord=1, dim=-1)


def _l2_rows(rows: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(rows, ord=2, dim=-1)


def _fpgm_rows(rows: torch.Tensor) -> torch.Tensor:
    """Per row, the sum of L2 distances to all rows (the block itself contributes 0)."""
    step = max(1, _FPGM_CHUNK_ENTRIES // max(1, rows.shape[0]))
    sums = [
        torch.cdist(chunk, rows, p=2.0, compute_mode="donot_use_mm_for_euclid_dist").sum(dim=-1)
        for chunk in rows.split(step)
    ]
    return torch.cat(sums) if sums else rows.new_zeros(0)


# ----- the k-th smallest value: torch.kthvalue, narrowed first by a sample on long rows -----

# Rows at least this long are narrowed by a sample before the exact selection.
KTH_MIN_NARROWED = 1 << 16
KTH_SAMPLE = 1 << 14
# Half-width of the sampled window around the k-th position, in standard deviations of
# that position's sample estimate: wide enough that the fallback almost never runs.
KTH_WINDOW_SIGMAS = 6.0


def kth_smallest(rows: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th smallest value (1-based) along the last dim, that dim kept with size 1.

    Equal to ``rows.kthvalue(k, dim=-1, keepdim=True).values`` as a value (NaN ranks
    largest). torch.kthvalue copies and partitions the whole row; on one long row a strided
    sample brackets the k-th value instead, two comparisons count what lies below and pick
    what lies inside, and kthvalue runs on the few inside. If the sample misses, kthvalue
    runs on the whole row.
    """
    one_row = rows.dim() > 0 and rows.numel() == rows.shape[-1]
    found = _narrowed(rows.reshape(-1), k) if one_row and rows.numel() >= KTH_MIN_NARROWED else None
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
    sample = values[:: max(1, values.numel() // KTH_SAMPLE)]
    size = sample.numel()
    share = k / values.numel()
    centre = share * size
    half = KTH_WINDOW_SIGMAS * math.sqrt(size * share * (1.0 - share)) + 1.0
    first = min(size, max(1, math.floor(centre - half)))
    last = min(size, max(1, math.ceil(centre + half)))
    return sample.kthvalue(first).values, sample.kthvalue(last).values
