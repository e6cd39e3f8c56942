"""Pruning mask generation: NNI 3.0's threshold, dependency, global, ratio and align stages."""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Mapping, Sequence

import torch

from dsl_compress.diagnostics import fail, raise_errors
from dsl_compress.engine.align import apply_align
from dsl_compress.engine.global_threshold import weighted_threshold
from dsl_compress.engine.mask_checks import (
    diagnostics,
    group_ratio,
    groups,
    internal_blocks,
    mask_problems,
    mask_shapes,
)
from dsl_compress.engine.mask_request import MaskRequest, Masks
from dsl_compress.vocab import TargetKind
from dsl_compress.engine.metrics import kth_smallest
from dsl_compress.plan import Key


def generate_masks(requests: Sequence[MaskRequest]) -> Masks:
    """Bool masks (True = kept) for every target some stage produces.

    Every error the settings and shapes give is raised first, all in one CompressionError
    (:func:`mask_problems`). Stages then run in NNI's order and AND their results: threshold,
    dependency, global, ratio, then align. Parameter masks have the tensor's full shape;
    input/output masks keep the broadcastable shape NNI stores for them.
    """
    raise_errors(diagnostics(mask_problems(list(_index(requests).values()))))
    return masks_of_checked(requests)


def masks_of_checked(requests: Sequence[MaskRequest]) -> Masks:
    """:func:`generate_masks` for requests whose :func:`mask_problems` are known to be none
    (the pruning stage checks before its calibration and does not check twice)."""
    by_key = _index(requests)
    raw: Masks = {}
    for stage in (_threshold_stage, _dependency_stage, _global_stage, _ratio_stage):
        for key, keep in stage(list(by_key.values())).items():
            _merge(raw, key, _expand_blocks(by_key[key], keep))
    aligned = [r for r in by_key.values() if r.stage == "align"]
    apply_align(aligned, raw, mask_shapes(by_key))
    return _finish_all(by_key, raw)


def _index(requests: Iterable[MaskRequest]) -> dict[Key, MaskRequest]:
    by_key: dict[Key, MaskRequest] = {}
    for request in requests:
        if request.key in by_key:
            fail("X803", f"{request.name} was requested twice", subject=request.name)
        if request.kind is TargetKind.PARAMETER and request.shape is None:
            fail("X803", f"parameter target {request.name} has no shape", subject=request.name)
        by_key[request.key] = request
    return by_key


def _metric(request: MaskRequest) -> torch.Tensor:
    """The target's metric; the checks have made sure it has one."""
    metric = request.metric() if callable(request.metric) else request.metric
    kernel = request.kernel
    expected = kernel.block_shape(request.shape, request.name) if kernel else request.shape
    if tuple(metric.shape) != tuple(expected):
        fail(
            "X803",
            f"the metric of {request.name} has shape {list(metric.shape)}, expected {list(expected)}",
            subject=request.name,
        )
    return metric


def ratio_keep(metric: torch.Tensor, ratio: float, view: Sequence[int] = (-1,)) -> torch.Tensor:
    """Keep all but the ``floor(per_row * ratio)`` smallest entries of each row of ``view``."""
    if ratio <= 0.0:
        return torch.ones_like(metric, dtype=torch.bool)
    if ratio >= 1.0:
        return torch.zeros_like(metric, dtype=torch.bool)
    rows = math.prod(view[:-1])
    count = int(metric.numel() // rows * ratio)
    if count == 0:
        return torch.ones_like(metric, dtype=torch.bool)
    viewed = metric.reshape(*view)
    keep = _cut_without_ties(viewed, count)
    if keep is None:
        _, indices = viewed.topk(count, dim=-1, largest=False)
        keep = torch.ones_like(viewed, dtype=torch.bool).scatter(-1, indices, False)
    return keep.reshape(metric.shape)


def _cut_without_ties(viewed: torch.Tensor, count: int) -> torch.Tensor | None:
    """Keep-mask pruning the ``count`` smallest entries per row, or None when the cut is tied.

    kthvalue and a comparison are a few linear passes, where topk with a large k sorts. When
    entries equal to the cut value straddle it, which of them NNI prunes is decided by
    torch.topk's internal order, so the caller falls back to topk for the same choice.
    """
    cut = kth_smallest(viewed, count)
    pruned = viewed <= cut
    if bool((_row_counts(pruned) != count).any()):
        return None
    return pruned.logical_not_()


def _row_counts(mask: torch.Tensor) -> torch.Tensor:
    """True entries per row; on one row, count_nonzero's whole-tensor kernel is 4x faster."""
    return torch.count_nonzero(mask) if mask.dim() == 1 else mask.sum(dim=-1)


def _bounds(request: MaskRequest) -> tuple[float, float]:
    """min and max sparse ratio; NNI reads a falsy value as unset (0.0 and 1.0)."""
    return request.get("min_sparse_ratio") or 0.0, request.get("max_sparse_ratio") or 1.0


def _threshold_stage(requests: Sequence[MaskRequest]) -> Masks:
    """Keep metric >= threshold, then re-generate at min/max when the ratio falls outside."""
    masks: Masks = {}
    for request in requests:
        threshold = request.get("sparse_threshold")
        if threshold is None:
            continue
        metric = _metric(request)
        keep = metric >= threshold
        # NNI measures the realised ratio in float32 over metric entries.
        realised = 1.0 - keep.to(torch.float32).sum() / keep.numel()
        low, high = _bounds(request)
        if bool(realised < low):
            keep = ratio_keep(metric, low)
        if bool(realised > high):
            keep = ratio_keep(metric, high)
        masks[request.key] = keep
    return masks


def _ratio_stage(requests: Sequence[MaskRequest]) -> Masks:
    masks: Masks = {}
    for request in requests:
        if request.stage != "ratio":
            continue
        metric = _metric(request)
        low, high = _bounds(request)
        ratio = min(high, max(low, request.get("sparse_ratio")))
        masks[request.key] = ratio_keep(metric, ratio)
    return masks


def _dependency_stage(requests: Sequence[MaskRequest]) -> Masks:
    """One mask per group, from the mean member metric, pruned per internal block."""
    masks: Masks = {}
    for group in groups(requests, "dependency", "dependency_group_id"):
        metrics = [_metric(r) for r in group]
        fused = metrics[0].clone()
        for metric in metrics[1:]:
            fused += metric.to(fused.device)
        fused = fused / len(metrics)
        keep = ratio_keep(fused, group_ratio(group), (internal_blocks(group), -1))
        masks.update({r.key: keep.clone() for r in group})
    return masks


def _global_stage(requests: Sequence[MaskRequest]) -> Masks:
    masks: Masks = {}
    for group in groups(requests, "global", "global_group_id"):
        masks.update(_global_group(group))
    return masks


def _global_group(group: Sequence[MaskRequest]) -> Masks:
    """Rank all members together: prune ``floor(total * ratio)`` elements, bounded by min/max."""
    ratio = group_ratio(group)
    metrics = [_metric(r) for r in group]
    sizes = [math.prod(r.shape) for r in group]
    total = sum(sizes)
    low = sum(int(n * _bounds(r)[0]) for n, r in zip(sizes, group))
    high = sum(int(n * _bounds(r)[1]) for n, r in zip(sizes, group))
    count = int(total * ratio)
    if count <= low:
        return {r.key: ratio_keep(m, _bounds(r)[0]) for r, m in zip(group, metrics)}
    if count >= high:
        # NNI reads an unset max as 0.0 here, so a ratio of 1.0 pruned nothing; we use 1.0.
        return {r.key: ratio_keep(m, _bounds(r)[1]) for r, m in zip(group, metrics)}
    grains = [n // m.numel() for n, m in zip(sizes, metrics)]
    threshold = weighted_threshold(lambda: zip(metrics, grains), count)
    return {r.key: m >= threshold.to(m.device) for r, m in zip(group, metrics)}


def _expand_blocks(request: MaskRequest, keep: torch.Tensor) -> torch.Tensor:
    """A metric-shaped mask spread over the target's blocks; whole-dim blocks stay size 1."""
    kernel = request.kernel
    return keep if kernel is None else kernel.expand(keep, request.shape, full=False)


def _merge(raw: Masks, key: Key, mask: torch.Tensor) -> None:
    raw[key] = raw[key] & mask.to(raw[key].device) if key in raw else mask


def _finish_all(by_key: Mapping[Key, MaskRequest], raw: Masks) -> Masks:
    """Every mask in its final form, each raw one dropped as soon as it is done.

    So the raw and the final masks are never all held at once; and a raw parameter mask
    that is already a full-shape tensor of its own is kept, not copied.
    """
    uses = Counter(_storage(mask) for mask in raw.values())
    return {key: _finish(by_key[key], raw.pop(key), uses) for key in list(raw)}


def _finish(request: MaskRequest, mask: torch.Tensor, uses: Counter) -> torch.Tensor:
    if request.kind is not TargetKind.PARAMETER:
        return mask
    if uses[_storage(mask)] == 1 and _whole_storage(mask, request.shape):
        return mask
    return torch.broadcast_to(mask, request.shape).clone()


def _storage(mask: torch.Tensor) -> int:
    return mask.untyped_storage().data_ptr()


def _whole_storage(mask: torch.Tensor, shape: tuple[int, ...]) -> bool:
    """The mask has the target's full shape and is the whole of its storage, densely."""
    return (
        tuple(mask.shape) == tuple(shape)
        and mask.numel() > 0
        and mask.is_contiguous()
        and mask.storage_offset() == 0
        and mask.untyped_storage().nbytes() == mask.numel() * mask.element_size()
    )
