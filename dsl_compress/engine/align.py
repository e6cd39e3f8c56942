"""The align stage: masks derived from another target's mask, resolved in dependency order."""

from __future__ import annotations

import graphlib
from typing import Sequence

import torch

from dsl_compress.diagnostics import fail
from dsl_compress.engine.align_shapes import (
    BlockLayout,
    block_layout,
    broadcasts,
    dims_in_range,
    reduced_dims,
)
from dsl_compress.engine.mask_request import MaskRequest, Masks
from dsl_compress.plan import Key


def apply_align(requests: Sequence[MaskRequest], raw: Masks) -> None:
    """AND each align target's derived mask into ``raw``, sources before the targets using them.

    A position is kept when any source element in its slice is kept: the source mask is
    reduced over every dim not listed in ``dims`` (no reduction when ``dims`` lists them all),
    then placed on the target (see :func:`place_on_target`).
    """
    by_key = {r.key: r for r in requests}
    for key in _order(by_key, raw):
        request = by_key[key]
        source = source_key(request)
        reduced = reduce_source(raw[source], request.get("align").get("dims") or [], request)
        placed = place_on_target(reduced, request, _name(source))
        raw[key] = raw[key] & placed.to(raw[key].device) if key in raw else placed


def source_key(request: MaskRequest) -> Key:
    align = request.get("align")
    return (align.get("module_name") or request.module, align["target_name"])


def _name(key: Key) -> str:
    return f"{key[0]}.{key[1]}"


def _order(by_key: dict[Key, MaskRequest], raw: Masks) -> list[Key]:
    """Align targets sorted so that an aligned source is computed before its users."""
    sorter: graphlib.TopologicalSorter[Key] = graphlib.TopologicalSorter()
    for key, request in by_key.items():
        source = source_key(request)
        if source in by_key:
            sorter.add(key, source)
        elif source in raw:
            sorter.add(key)
        else:
            fail(
                "P503",
                f"{request.name} aligns to {_name(source)}, which gets no mask",
                subject=request.name,
                hint=f"give {_name(source)} a sparse_ratio, sparse_threshold or group, "
                f"or drop {request.target} from target_names",
                rules_hint=f"give {_name(source)} a sparse_ratio, sparse_threshold or group "
                f"(prune {_name(source)} sparse_ratio=...), or remove the align statement "
                f"for {request.name}",
            )
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as err:
        cycle = " -> ".join(_name(k) for k in err.args[1])
        fail(
            "P504",
            f"align targets form a cycle: {cycle}",
            subject=_name(err.args[1][0]),
            hint="break the cycle: give one member a sparse_ratio instead of an align",
        )
        raise AssertionError("unreachable") from err


def reduce_source(source: torch.Tensor, dims: Sequence[int], request: MaskRequest) -> torch.Tensor:
    """Any-reduce the source mask over the dims not listed in ``dims``."""
    rank = source.dim()
    if not dims_in_range(dims, rank):
        fail(
            "P509",
            f"align dims {list(dims)} of {request.name} are out of range for a source mask "
            f"of rank {rank}",
            subject=request.name,
        )
    reduced = reduced_dims(dims, rank)
    return source.any(dim=reduced) if reduced else source


def place_on_target(reduced: torch.Tensor, request: MaskRequest, source: str) -> torch.Tensor:
    """The reduced mask in the target's raw (broadcastable) mask shape.

    Without a granularity it broadcasts over the target's trailing dims, as in NNI. With one,
    it is laid out on the target's blocks as :func:`block_layout` says; a single value covers
    every block.
    """
    kernel, shape = request.kernel, request.shape
    if kernel is None:
        if shape is not None and not broadcasts(reduced.shape, shape):
            _misfit(reduced, request, source, shape)
        return reduced
    if shape is None:
        fail(
            "P509",
            f"the shape of {request.name} was not observed, so the mask aligned from {source} "
            "cannot be laid out on its granularity blocks",
            subject=request.name,
            hint="run a forward pass (calibration batch) before generating masks",
        )
    blocks = kernel.block_shape(shape, request.name)
    layout = block_layout(reduced.shape, shape, blocks)
    if layout is None:
        _misfit(reduced, request, source, shape, blocks)
    return kernel.expand(_onto_blocks(reduced, layout, blocks), shape, full=False)


def _onto_blocks(
    reduced: torch.Tensor, layout: BlockLayout, blocks: tuple[int, ...]
) -> torch.Tensor:
    if not layout.split:
        return reduced.reshape(()).expand(blocks)
    values = reduced.reshape(layout.split)
    if layout.inner:
        values = values.any(dim=layout.inner)
    return values.reshape(blocks)


def _misfit(
    reduced: torch.Tensor,
    request: MaskRequest,
    source: str,
    shape: Sequence[int],
    blocks: Sequence[int] | None = None,
) -> None:
    layout = f" (granularity blocks {list(blocks)})" if blocks is not None else ""
    fail(
        "P509",
        f"the mask aligned from {source} to {request.name} has shape {list(reduced.shape)}, "
        f"which does not fit the shape {list(shape)} of {request.name}{layout}",
        subject=request.name,
        hint="check align dims and granularity: the kept dims must match the target's sizes",
    )
