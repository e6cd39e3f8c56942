"""The mask stage's checks of settings and shapes, never of values: the engine runs them before
computing any mask, and lint runs the same functions, so both report the same errors at once."""

from __future__ import annotations

import graphlib
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from dsl_compress.diagnostics import CompressionError, Diagnostic, error
from dsl_compress.engine.align_shapes import align_misfit, dims_in_range, reduced_shape
from dsl_compress.engine.mask_request import MaskRequest
from dsl_compress.engine.structure_checks import structure_problems
from dsl_compress.plan import Key
from dsl_compress.schema.key_sets import MASK_KEYS
from dsl_compress.vocab import TargetKind


@dataclass(frozen=True)
class Problem:
    """One error of the mask stage: the target and setting key that cause it, and the error."""

    key: Key
    setting: str
    diagnostic: Diagnostic


def mask_problems(
    requests: Sequence[MaskRequest], *, shapes_observed: bool = True
) -> list[Problem]:
    """Every error the mask stage would meet, found from settings and shapes alone.

    ``shapes_observed`` says that an input/output without a shape was not seen by a forward
    pass (the engine's case); lint, which runs no forward pass, passes False and skips those.
    """
    found = [
        p
        for r in requests
        for p in (*_activity(r), *_granularity(r), *_no_metric(r), *_structure(r))
    ]
    # An input/output that takes a ratio is P508 and nothing more: no stage would rank it.
    requests = [r for r in requests if r.kind is TargetKind.PARAMETER or not _activity(r)]
    by_key = {r.key: r for r in requests}
    found.extend(_group_problems(requests, "global", "global_group_id", "P505"))
    found.extend(_group_problems(requests, "dependency", "dependency_group_id", "P506"))
    found.extend(_align_problems(by_key, shapes_observed))
    return found


def diagnostics(problems: Iterable[Problem]) -> list[Diagnostic]:
    return [p.diagnostic for p in problems]


# ----- one target ---------------------------------------------------------------------------------


def _activity(request: MaskRequest) -> list[Problem]:
    if request.kind is TargetKind.PARAMETER:
        return []
    active = [k for k in MASK_KEYS if request.get(k) is not None]
    if not active:
        return []
    message = (
        f"{request.name} is an {request.kind.value} target and cannot take "
        f"{', '.join(active)}; activations get masks only through align"
    )
    hint = "align it to a parameter's mask, e.g. align: {target_name: 'weight', dims: [0]}"
    rules_hint = (
        f"align it to a parameter's mask instead: align {request.name} "
        f"with {request.module}.weight dims=[0]"
    )
    diag = error("P508", message, subject=request.name, hint=hint, rules_hint=rules_hint)
    return [Problem(request.key, active[0], diag)]


def _granularity(request: MaskRequest) -> list[Problem]:
    """P501 where the target's blocks are laid out: it makes a mask or takes an aligned one."""
    if request.stage is None and not request.makes_mask:
        return []
    try:
        kernel = request.kernel
        if kernel is not None and request.shape is not None:
            kernel.block_shape(request.shape, request.name)
    except CompressionError as exc:
        return [Problem(request.key, "granularity", d) for d in exc.diagnostics]
    return []


def _no_metric(request: MaskRequest) -> list[Problem]:
    """A parameter ranked on its own needs a metric (group members: see _group_problems)."""
    if request.kind is not TargetKind.PARAMETER or request.metric is not None:
        return []
    key = "sparse_threshold" if request.get("sparse_threshold") is not None else "sparse_ratio"
    if request.get(key) is None or request.stage not in (None, "ratio", "align"):
        return []
    message = f"{request.name} has no metric: a {key} needs one"
    return [Problem(request.key, key, error("P507", message, subject=request.name))]


def _structure(request: MaskRequest) -> list[Problem]:
    return [Problem(request.key, key, diag) for key, diag in structure_problems(request)]


def block_shape_or_none(request: MaskRequest) -> tuple[int, ...] | None:
    """The target's block grid (its shape without a granularity); None when unknown or unfit."""
    if request.shape is None:
        return None
    try:
        kernel = request.kernel
        return kernel.block_shape(request.shape) if kernel is not None else request.shape
    except CompressionError:
        return None  # reported by _granularity


# ----- global and dependency groups ---------------------------------------------------------------


def groups(requests: Iterable[MaskRequest], stage: str, id_key: str) -> list[list[MaskRequest]]:
    """The members of each group of ``stage``, by group id, in request order."""
    found: dict[object, list[MaskRequest]] = {}
    for request in requests:
        if request.stage == stage:
            found.setdefault(request.get(id_key), []).append(request)
    return list(found.values())


def group_ratio(group: Sequence[MaskRequest]) -> float:
    """The group's one sparse_ratio (the checks have made sure there is exactly one)."""
    return next(r.get("sparse_ratio") for r in group if r.get("sparse_ratio") is not None)


def internal_blocks(group: Sequence[MaskRequest]) -> int:
    """The number of metric blocks a dependency group is ranked in: the lcm of its members'."""
    return math.lcm(1, *(r.get("internal_metric_block") or 1 for r in group))


def _group_problems(
    requests: Sequence[MaskRequest], stage: str, id_key: str, code: str
) -> list[Problem]:
    found: list[Problem] = []
    for group in groups(requests, stage, id_key):
        found.extend(_ratio_problems(group, stage, id_key, code))
        for member in group:
            if member.metric is None:
                message = (
                    f"{member.name} has no metric: a {stage} group member needs a sparse_ratio"
                )
                hint = "give it the group's sparse_ratio"
                diag = error(code, message, subject=member.name, hint=hint)
                found.append(Problem(member.key, id_key, diag))
        if stage == "dependency":
            found.extend(_dependency_shape_problems(group))
    return found


def _ratio_problems(
    group: Sequence[MaskRequest], stage: str, id_key: str, code: str
) -> list[Problem]:
    ratios = {r.name: r.get("sparse_ratio") for r in group if r.get("sparse_ratio") is not None}
    first, members = group[0], ", ".join(r.name for r in group)
    if not ratios:
        message = f"no member of the {stage} group [{members}] has a sparse_ratio"
        return [Problem(first.key, id_key, error(code, message, subject=first.name))]
    if len(set(ratios.values())) == 1:
        return []
    listed = ", ".join(f"{name}={ratio}" for name, ratio in ratios.items())
    message = f"members of the {stage} group [{members}] have different sparse ratios: {listed}"
    hint = "give every member of the group the same sparse_ratio"
    return [Problem(first.key, "sparse_ratio", error(code, message, subject=first.name, hint=hint))]


def _dependency_shape_problems(group: Sequence[MaskRequest]) -> list[Problem]:
    """Members share one mask: their metric (block) shapes must agree and split into blocks."""
    first, members = group[0], ", ".join(r.name for r in group)
    grids = {r.name: block_shape_or_none(r) for r in group if r.metric is not None}
    if not grids or any(grid is None for grid in grids.values()):
        return []  # no metric to compare, or a granularity that does not fit (P501)
    if len(set(grids.values())) > 1:
        listed = ", ".join(f"{name} {list(grid)}" for name, grid in grids.items())
        message = f"members of a dependency group have different metric shapes: {listed}"
        hint = "use the same granularity on tensors with the same rank and channel count"
        diag = error("P506", message, subject=first.name, hint=hint)
        return [Problem(first.key, "granularity", diag)]
    blocks = [r.get("internal_metric_block") or 1 for r in group]
    if not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in blocks):
        message = f"internal_metric_block must be a positive int [{members}]"
        diag = error("P506", message, subject=first.name)
        return [Problem(first.key, "internal_metric_block", diag)]
    number, numel = internal_blocks(group), math.prod(next(iter(grids.values())))
    if numel % number == 0:
        return []
    message = (
        f"internal_metric_block {number} does not divide the {numel} metric entries "
        f"of the dependency group [{members}]"
    )
    diag = error("P506", message, subject=first.name)
    return [Problem(first.key, "internal_metric_block", diag)]


# ----- align --------------------------------------------------------------------------------------


def source_key(request: MaskRequest) -> Key:
    align = request.get("align")
    return (align.get("module_name") or request.module, align["target_name"])


def align_dims(request: MaskRequest) -> list[int]:
    return list(request.get("align").get("dims") or [])


def _name(key: Key) -> str:
    return f"{key[0]}.{key[1]}"


def _align_problems(by_key: Mapping[Key, MaskRequest], shapes_observed: bool) -> list[Problem]:
    aligned = {k: r for k, r in by_key.items() if r.stage == "align"}
    shapes = mask_shapes(by_key)
    found: list[Problem] = []
    for key, request in aligned.items():
        source = source_key(request)
        if source not in aligned and not (source in by_key and by_key[source].makes_mask):
            found.append(Problem(key, "align", _no_source(request, source)))
            continue
        source_shape = shapes.get(source)
        misfit = align_shape_error(request, source_shape) if source_shape is not None else None
        if misfit is None and shapes_observed:
            misfit = _unobserved(request, source)
        if misfit is not None:
            found.append(Problem(key, "align", misfit))
    found.extend(_cycles(aligned))
    return found


def mask_shapes(by_key: Mapping[Key, MaskRequest]) -> dict[Key, tuple[int, ...] | None]:
    """The full shape each target's mask stands for: its own shape, or for an input/output
    without one that is aligned without a granularity, the reduced shape of its source."""
    shapes = {key: request.shape for key, request in by_key.items()}
    aligned = {k: r for k, r in by_key.items() if r.stage == "align"}
    try:
        order = align_order(aligned)
    except graphlib.CycleError:
        return shapes  # P504
    for key in (k for k in order if shapes.get(k) is None and aligned[k].kernel is None):
        source_shape, dims = shapes.get(source_key(aligned[key])), align_dims(aligned[key])
        if source_shape is not None and dims_in_range(dims, len(source_shape)):
            shapes[key] = reduced_shape(source_shape, dims)
    return shapes


def _no_source(request: MaskRequest, source: Key) -> Diagnostic:
    return error(
        "P503",
        f"{request.name} is aligned to {_name(source)}, which gets no mask",
        subject=request.name,
        hint=f"give {_name(source)} a sparse_ratio, sparse_threshold or group, "
        f"or drop {request.target} from target_names",
        rules_hint=f"give {_name(source)} a sparse_ratio, sparse_threshold or group "
        f"(prune {_name(source)} sparse_ratio=...), or remove the align statement "
        f"for {request.name}",
    )


def _cycles(aligned: Mapping[Key, MaskRequest]) -> list[Problem]:
    try:
        align_order(aligned)
    except graphlib.CycleError as err:
        cycle = err.args[1]
        message = f"align targets form a cycle: {' -> '.join(_name(k) for k in cycle)}"
        hint = "break the cycle: give one member a sparse_ratio instead of an align"
        diag = error("P504", message, subject=_name(cycle[0]), hint=hint)
        return [Problem(cycle[0], "align", diag)]
    return []


def align_order(aligned: Mapping[Key, MaskRequest]) -> list[Key]:
    """Align targets sorted so that an aligned source comes before its users."""
    sorter: graphlib.TopologicalSorter[Key] = graphlib.TopologicalSorter()
    for key, request in aligned.items():
        source = source_key(request)
        sorter.add(key, *([source] if source in aligned else []))
    return list(sorter.static_order())


def align_shape_error(request: MaskRequest, source_shape: Sequence[int]) -> Diagnostic | None:
    """P509 when the source mask (of shape ``source_shape``), reduced over the dims the align
    does not list, cannot be laid out on the target; the target's shape and blocks decide."""
    dims, source, rank = align_dims(request), _name(source_key(request)), len(source_shape)
    if not dims_in_range(dims, rank):
        message = (
            f"align dims {dims} of {request.name} are out of range for {source}, "
            f"whose mask has rank {rank}"
        )
        hint = f"use dims between {-rank} and {rank - 1}"
        return error("P509", message, subject=request.name, hint=hint)
    shape = request.shape
    blocks = block_shape_or_none(request) if request.kernel is not None else None
    if shape is None or (request.kernel is not None and blocks is None):
        return None  # not observed, or a granularity that does not fit (P501)
    if align_misfit(source_shape, dims, shape, blocks) is None:
        return None
    note = f", granularity blocks {list(blocks)}" if blocks is not None else ""
    message = (
        f"{request.name} (shape {list(shape)}{note}) is aligned to {source} on dims {dims}, "
        f"of size {list(reduced_shape(source_shape, dims))} there; the sizes do not fit"
    )
    hint = "align to a tensor of the same size on those dims, or fix dims"
    return error("P509", message, subject=request.name, hint=hint)


def _unobserved(request: MaskRequest, source: Key) -> Diagnostic | None:
    if request.shape is not None or request.kernel is None:
        return None
    message = (
        f"the shape of {request.name} was not observed, so the mask aligned from "
        f"{_name(source)} cannot be laid out on its granularity blocks"
    )
    hint = "run a forward pass (calibration batch) before generating masks"
    return error("P509", message, subject=request.name, hint=hint)
