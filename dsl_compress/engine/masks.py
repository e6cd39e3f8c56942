"""Pruning mask generation: NNI 3.0's threshold, dependency, global, ratio and align stages
(the ratio stage also makes our N:M masks)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch

from dsl_compress.diagnostics import fail, raise_errors
from dsl_compress.engine.align import place_on_target, reduce_source
from dsl_compress.engine.align_shapes import reduced_shape
from dsl_compress.engine.global_threshold import weighted_threshold
from dsl_compress.engine.mask_checks import (
    align_dims,
    align_order,
    diagnostics,
    group_ratio,
    groups,
    internal_blocks,
    mask_problems,
    mask_shapes,
    source_key,
)
from dsl_compress.engine.mask_request import MaskRequest, Masks
from dsl_compress.vocab import TargetKind
from dsl_compress.engine.metrics import kth_smallest
from dsl_compress.plan import Key
from dsl_compress.schema.mask_structure import MaskStructure, parse_mask_structure

# Whether this process masks a target; a sum of a tensor over every process (in place).
Owns = Callable[[Key], bool]
Reduce = Callable[[torch.Tensor], None]


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
    (the pruning stage checks before its calibration and does not check twice).

    The in-memory path of the one per-target pipeline (:class:`MaskPipeline`): the group
    statistics first, then each target's mask, align sources before their targets.
    """
    pipeline = MaskPipeline(requests)
    pipeline.prepare()
    masks = {key: pipeline.mask(key) for key in pipeline.order()}
    return {key: masks[key] for key in pipeline.stage_order()}


class MaskPipeline:
    """Masks one target at a time, so a streamed run holds one target's tensors at once.

    :meth:`prepare` runs the statistics the groups need (a dependency group's mean metric and
    its keep-mask, a global group's bound case or threshold), reading each member's metric
    as it goes; :meth:`mask` then gives a target's final mask from its own metric, its group's
    result and, for an align target, what its source left (only the source mask reduced over
    the dims the align does not list is kept, until the target takes it). Targets must be
    asked in :meth:`order`. Metrics are asked of their requests again in each pass; a request
    whose metric is a callable recomputes it, so nothing of a whole group is held.
    """

    def __init__(self, requests: Sequence[MaskRequest]):
        self._by_key = _index(requests)
        self._shapes = mask_shapes(self._by_key)
        self._aligned = {k: r for k, r in self._by_key.items() if r.stage == "align"}
        self._users: dict[Key, list[Key]] = {}
        for key, request in self._aligned.items():
            self._users.setdefault(source_key(request), []).append(key)
        self._dependency: dict[Key, _Once] = {}
        self._global: dict[Key, _GlobalCut] = {}
        self._reduced: dict[Key, torch.Tensor] = {}
        self._mask_keys = frozenset(self.stage_order())

    def prepare(self, owns: Owns | None = None, reduce: Reduce | None = None) -> None:
        """The group statistics: every global group's cut; a dependency group's keep-mask is
        computed when its first member is masked and let go after its last.

        In a distributed run ``owns`` says which targets this process masks: a dependency
        group (all on one process, see :meth:`linked`) is computed where it is owned; a global
        group's members are spread, each process reading its own and ``reduce`` summing the
        selection's histograms over every process (exact integer sums, so the threshold is
        the one process's, bit for bit).
        """
        requests = list(self._by_key.values())
        for group in groups(requests, "dependency", "dependency_group_id"):
            keep = _Once(functools.partial(_dependency_keep, group))
            self._dependency.update((r.key, keep) for r in group)
        for group in groups(requests, "global", "global_group_id"):
            local = [r for r in group if owns is None or owns(r.key)]
            cut = _global_cut(group, local, reduce)
            self._global.update((r.key, cut) for r in group)

    def sources_of(self, keys: list[Key]) -> set[Key]:
        """``keys`` and every target their masks are aligned from, transitively."""
        found: set[Key] = set()
        pending = list(keys)
        while pending:
            key = pending.pop()
            if key in found:
                continue
            found.add(key)
            if key in self._aligned:
                pending.append(source_key(self._aligned[key]))
        return found

    def linked(self) -> list[list[Key]]:
        """Targets whose masks are computed from each other: each dependency group, and each
        align target with its source (a distributed run keeps each set on one process)."""
        requests = list(self._by_key.values())
        found = [[r.key for r in g] for g in groups(requests, "dependency", "dependency_group_id")]
        found += [[key, source_key(r)] for key, r in self._aligned.items()]
        return found

    def stage_order(self) -> list[Key]:
        """The masked targets in the order NNI's stages first produce them (the masks' order)."""
        requests = list(self._by_key.values())
        keys = [r.key for r in requests if r.get("sparse_threshold") is not None]
        for stage, id_key in (("dependency", "dependency_group_id"), ("global", "global_group_id")):
            keys += [r.key for group in groups(requests, stage, id_key) for r in group]
        keys += [r.key for r in requests if r.stage == "ratio"]
        keys += align_order(self._aligned)
        return list(dict.fromkeys(keys))

    def __contains__(self, key: Key) -> bool:
        """Whether the target ends with a mask (some stage, or an align, makes one)."""
        return key in self._mask_keys

    def order(self) -> list[Key]:
        """The masked targets, each align target right after its source (so a source's
        reduced mask is held only until its targets take it)."""
        found: dict[Key, None] = {}

        def visit(key: Key) -> None:
            found[key] = None
            for user in self._users.get(key, ()):
                if user not in found:
                    visit(user)

        roots = [k for k in self.stage_order() if k not in self._aligned]
        for key in [*roots, *align_order(self._aligned)]:
            if key not in found:
                visit(key)
        return list(found)

    def mask(self, key: Key) -> torch.Tensor:
        """The final mask of one target: parameter masks have the tensor's full shape."""
        request = self._by_key[key]
        raw = self._own_mask(request)
        if key in self._aligned:
            raw = _and(raw, self._placed(request))
        for user in self._users.get(key, ()):
            dims = align_dims(self._aligned[user])
            reduced = reduce_source(raw, self._shapes[key], dims)
            # Without a reduction this is the source's own mask: the user gets a copy.
            self._reduced[user] = reduced.clone() if reduced is raw else reduced
        return _finish(request, raw)

    def _own_mask(self, request: MaskRequest) -> torch.Tensor | None:
        """The AND of the threshold, dependency, global and ratio stages' masks for a target."""
        metric = _Once(lambda: _metric(request))
        raw = None
        if request.get("sparse_threshold") is not None:
            raw = _and(raw, _expand_blocks(request, _threshold_keep(request, metric())))
        if request.key in self._dependency:
            keep = self._dependency.pop(request.key)()
            raw = _and(raw, _expand_blocks(request, keep.clone()))
        if request.key in self._global:
            keep = self._global[request.key].keep(request, metric())
            raw = _and(raw, _expand_blocks(request, keep))
        if request.stage == "ratio":
            raw = _and(raw, _expand_blocks(request, _ratio_keep_of(request, metric())))
        return raw

    def _placed(self, request: MaskRequest) -> torch.Tensor:
        source = source_key(request)
        reduced = self._reduced.pop(request.key)
        full = reduced_shape(self._shapes[source], align_dims(request))
        return place_on_target(reduced, request, full)


class _Once:
    """A value computed on first use and then kept: a target's metric for the rest of that
    target; a dependency group's keep-mask, shared by its members and released with the last
    member's reference to it."""

    def __init__(self, compute: Callable[[], torch.Tensor]):
        self._compute = compute
        self._value: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor:
        if self._value is None:
            self._value = self._compute()
        return self._value


def _and(raw: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    return mask if raw is None else raw & mask.to(raw.device)


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
    return _prune_smallest(metric.reshape(*view), count).reshape(metric.shape)


def structure_keep(metric: torch.Tensor, structure: MaskStructure) -> torch.Tensor:
    """N:M: keep all but the ``structure.pruned`` smallest entries of every group of
    ``structure.group`` consecutive entries along the last dim (the checks have made sure the
    groups fit), ties broken as :func:`ratio_keep` breaks them."""
    if metric.numel() == 0:
        return torch.ones_like(metric, dtype=torch.bool)
    groups = metric.reshape(-1, structure.group)
    return _prune_smallest(groups, structure.pruned).reshape(metric.shape)


def _prune_smallest(viewed: torch.Tensor, count: int) -> torch.Tensor:
    """Keep-mask pruning the ``count`` smallest entries of each row of ``viewed``."""
    keep = _cut_without_ties(viewed, count)
    if keep is None:
        _, indices = viewed.topk(count, dim=-1, largest=False)
        keep = torch.ones_like(viewed, dtype=torch.bool).scatter(-1, indices, False)
    return keep


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


def _threshold_keep(request: MaskRequest, metric: torch.Tensor) -> torch.Tensor:
    """Keep metric >= threshold, then re-generate at min/max when the ratio falls outside."""
    keep = metric >= request.get("sparse_threshold")
    # NNI measures the realised ratio in float32 over metric entries.
    realised = 1.0 - keep.to(torch.float32).sum() / keep.numel()
    low, high = _bounds(request)
    if bool(realised < low):
        keep = ratio_keep(metric, low)
    if bool(realised > high):
        keep = ratio_keep(metric, high)
    return keep


def _ratio_keep_of(request: MaskRequest, metric: torch.Tensor) -> torch.Tensor:
    structure = parse_mask_structure(request.get("mask_structure"))
    if structure is not None:
        return structure_keep(metric, structure)
    low, high = _bounds(request)
    return ratio_keep(metric, min(high, max(low, request.get("sparse_ratio"))))


def _dependency_keep(group: Sequence[MaskRequest]) -> torch.Tensor:
    """One keep-mask for a group, from the mean member metric, pruned per internal block;
    the members' metrics are read one at a time into one running sum."""
    fused = _metric(group[0]).clone()
    for request in group[1:]:
        fused += _metric(request).to(fused.device)
    fused = fused / len(group)
    return ratio_keep(fused, group_ratio(group), (internal_blocks(group), -1))


@dataclass(frozen=True)
class _GlobalCut:
    """How a global group's members are cut: each at one of its own bounds, or all at one
    threshold (a 0-dim tensor) where every member keeps metric >= threshold."""

    bound: int | None = None  # 0: each member at its min_sparse_ratio; 1: at its max
    threshold: torch.Tensor | None = None

    def keep(self, request: MaskRequest, metric: torch.Tensor) -> torch.Tensor:
        if self.threshold is not None:
            return metric >= self.threshold.to(metric.device)
        return ratio_keep(metric, _bounds(request)[self.bound])


def _global_cut(
    group: Sequence[MaskRequest], local: Sequence[MaskRequest], reduce: Reduce | None
) -> _GlobalCut:
    """Rank all members together: prune ``floor(total * ratio)`` elements, bounded by min/max."""
    ratio = group_ratio(group)
    sizes = [math.prod(r.shape) for r in group]
    total = sum(sizes)
    low = sum(int(n * _bounds(r)[0]) for n, r in zip(sizes, group))
    high = sum(int(n * _bounds(r)[1]) for n, r in zip(sizes, group))
    count = int(total * ratio)
    if count <= low:
        return _GlobalCut(bound=0)
    if count >= high:
        # NNI reads an unset max as 0.0 here, so a ratio of 1.0 pruned nothing; we use 1.0.
        return _GlobalCut(bound=1)
    return _GlobalCut(threshold=_global_threshold(local, count, reduce))


def _global_threshold(
    members: Sequence[MaskRequest], count: int, reduce: Reduce | None
) -> torch.Tensor:
    """The smallest metric value whose cumulative grain (ascending order) exceeds ``count``,
    by :func:`weighted_threshold`: each member's metric is computed in each of its passes
    (a streamed member is read again), never all at once; ``members`` are this process's
    (all, outside a distributed run) and ``reduce`` sums the passes' histograms over all.
    """

    def metrics() -> Iterator[tuple[torch.Tensor, int]]:
        for request in members:
            metric = _metric(request)
            yield metric, math.prod(request.shape) // max(1, metric.numel())

    return weighted_threshold(metrics, count, reduce)


def _expand_blocks(request: MaskRequest, keep: torch.Tensor) -> torch.Tensor:
    """A metric-shaped mask spread over the target's blocks; whole-dim blocks stay size 1."""
    kernel = request.kernel
    return keep if kernel is None else kernel.expand(keep, request.shape, full=False)


def _finish(request: MaskRequest, mask: torch.Tensor) -> torch.Tensor:
    """The final form: a parameter mask of the tensor's full shape, its own storage."""
    if request.kind is not TargetKind.PARAMETER:
        return mask
    if _whole_storage(mask, request.shape):
        return mask
    return torch.broadcast_to(mask, request.shape).clone()


def _whole_storage(mask: torch.Tensor, shape: tuple[int, ...]) -> bool:
    """The mask has the target's full shape and is the whole of its storage, densely."""
    return (
        tuple(mask.shape) == tuple(shape)
        and mask.numel() > 0
        and mask.is_contiguous()
        and mask.storage_offset() == 0
        and mask.untyped_storage().nbytes() == mask.numel() * mask.element_size()
    )
