"""Pruning mask generation: NNI 3.0's threshold, dependency, global, ratio and align stages."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import torch

from dsl_compress.engine.align import apply_align
from dsl_compress.engine.mask_request import MaskRequest, Masks
from dsl_compress.diagnostics import fail
from dsl_compress.schema.key_sets import MASK_KEYS
from dsl_compress.vocab import TargetKind
from dsl_compress.engine.metrics import kth_smallest
from dsl_compress.plan import Key


def generate_masks(requests: Sequence[MaskRequest]) -> Masks:
    """Bool masks (True = kept) for every target some stage produces.

    Stages run in NNI's order and AND their results: threshold, dependency, global, ratio,
    then align. Parameter masks have the tensor's full shape; input/output masks keep the
    broadcastable shape NNI stores for them.
    """
    by_key = _index(requests)
    raw: Masks = {}
    for stage in (_threshold_stage, _dependency_stage, _global_stage, _ratio_stage):
        for key, keep in stage(list(by_key.values())).items():
            _merge(raw, key, _expand_blocks(by_key[key], keep))
    aligned = [r for r in by_key.values() if _stage_of(r) == "align"]
    apply_align(aligned, raw)
    return _finish_all(by_key, raw)


def _index(requests: Iterable[MaskRequest]) -> dict[Key, MaskRequest]:
    by_key: dict[Key, MaskRequest] = {}
    for request in requests:
        if request.key in by_key:
            fail("X803", f"{request.name} was requested twice", subject=request.name)
        _check_request(request)
        by_key[request.key] = request
    return by_key


def _check_request(request: MaskRequest) -> None:
    if request.kind is not TargetKind.PARAMETER:
        active = [k for k in MASK_KEYS if request.get(k) is not None]
        if active:
            fail(
                "P508",
                f"{request.name} is an {request.kind.value} target and cannot take "
                f"{', '.join(active)}; activations get masks only through align",
                subject=request.name,
                hint="align it to a parameter's mask, e.g. align: {target_name: 'weight', dims: [0]}",
                rules_hint=f"align it to a parameter's mask instead: align {request.name} "
                f"with {request.module}.weight dims=[0]",
            )
    elif request.shape is None:
        fail("X803", f"parameter target {request.name} has no shape", subject=request.name)


def _stage_of(request: MaskRequest) -> str | None:
    """The one of the dependency, global, ratio, align stages a target falls into, if any."""
    if request.get("dependency_group_id") is not None:
        return "dependency"
    if request.get("global_group_id") is not None:
        return "global"
    if request.get("sparse_ratio") is not None:
        return "ratio"
    if request.get("align") is not None:
        return "align"
    return None


def _metric(request: MaskRequest, code: str, why: str) -> torch.Tensor:
    if request.metric is None:
        fail(code, f"{request.name} has no metric: {why}", subject=request.name)
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
        metric = _metric(request, "P507", "a sparse_threshold needs one")
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
        if _stage_of(request) != "ratio":
            continue
        metric = _metric(request, "P507", "a sparse_ratio needs one")
        low, high = _bounds(request)
        ratio = min(high, max(low, request.get("sparse_ratio")))
        masks[request.key] = ratio_keep(metric, ratio)
    return masks


def _groups(requests: Sequence[MaskRequest], stage: str, key: str) -> list[list[MaskRequest]]:
    groups: dict[Any, list[MaskRequest]] = {}
    for request in requests:
        if _stage_of(request) == stage:
            groups.setdefault(request.get(key), []).append(request)
    return list(groups.values())


def _group_ratio(group: Sequence[MaskRequest], code: str, kind: str) -> float:
    ratios = {r.name: r.get("sparse_ratio") for r in group if r.get("sparse_ratio") is not None}
    members = ", ".join(r.name for r in group)
    if not ratios:
        fail(code, f"no member of the {kind} group [{members}] has a sparse_ratio", subject=members)
    if len(set(ratios.values())) > 1:
        listed = ", ".join(f"{name}={ratio}" for name, ratio in ratios.items())
        fail(
            code,
            f"members of the {kind} group [{members}] have different sparse ratios: {listed}",
            subject=members,
            hint="give every member of the group the same sparse_ratio",
        )
    return next(iter(ratios.values()))


def _dependency_stage(requests: Sequence[MaskRequest]) -> Masks:
    """One mask per group, from the mean member metric, pruned per internal block."""
    masks: Masks = {}
    for group in _groups(requests, "dependency", "dependency_group_id"):
        ratio = _group_ratio(group, "P506", "dependency")
        metrics = [_metric(r, "P506", "a dependency member needs a sparse_ratio") for r in group]
        _check_same_shapes(group, metrics)
        fused = metrics[0].clone()
        for metric in metrics[1:]:
            fused += metric.to(fused.device)
        fused = fused / len(metrics)
        blocks = _internal_blocks(group, fused.numel())
        keep = ratio_keep(fused, ratio, (blocks, -1))
        masks.update({r.key: keep.clone() for r in group})
    return masks


def _check_same_shapes(group: Sequence[MaskRequest], metrics: Sequence[torch.Tensor]) -> None:
    shapes = {r.name: list(m.shape) for r, m in zip(group, metrics)}
    if len({tuple(s) for s in shapes.values()}) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        fail(
            "P506",
            f"members of a dependency group have different metric shapes: {listed}",
            subject=", ".join(shapes),
            hint="use the same granularity on tensors with the same rank and channel count",
        )


def _internal_blocks(group: Sequence[MaskRequest], numel: int) -> int:
    blocks = [r.get("internal_metric_block") or 1 for r in group]
    members = ", ".join(r.name for r in group)
    if not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in blocks):
        fail("P506", f"internal_metric_block must be a positive int [{members}]", subject=members)
    number = math.lcm(1, *blocks)
    if numel % number:
        fail(
            "P506",
            f"internal_metric_block {number} does not divide the {numel} metric entries "
            f"of the dependency group [{members}]",
            subject=members,
        )
    return number


def _global_stage(requests: Sequence[MaskRequest]) -> Masks:
    masks: Masks = {}
    for group in _groups(requests, "global", "global_group_id"):
        masks.update(_global_group(group))
    return masks


def _global_group(group: Sequence[MaskRequest]) -> Masks:
    """Rank all members together: prune ``floor(total * ratio)`` elements, bounded by min/max."""
    ratio = _group_ratio(group, "P505", "global")
    metrics = [_metric(r, "P505", "a global group member needs a sparse_ratio") for r in group]
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
    threshold = _global_threshold(metrics, grains, count)
    return {r.key: m >= threshold.to(m.device) for r, m in zip(group, metrics)}


def _global_threshold(
    metrics: Sequence[torch.Tensor], grains: Sequence[int], count: int
) -> torch.Tensor:
    """The smallest metric value whose cumulative grain (ascending order) exceeds ``count``.

    Everything below it is pruned: the smallest entries whose grains add up to at most
    ``count`` elements; ties at the threshold are kept, as in NNI's heap walk.
    """
    device = metrics[0].device
    values = torch.cat([m.reshape(-1).to(device) for m in metrics])
    counts = torch.tensor([m.numel() for m in metrics], device=device)
    weights = torch.tensor(grains, device=device).repeat_interleave(counts)
    ordered, order = values.sort()
    reached = weights[order].cumsum(0)
    first = torch.searchsorted(reached, torch.tensor([count], device=device), right=True)
    return ordered[first.clamp(max=ordered.numel() - 1)].reshape(())


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
