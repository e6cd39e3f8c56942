"""The align stage: masks derived from another target's mask, resolved in dependency order."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from dsl_compress.engine.align_shapes import BlockLayout, block_layout, reduced_dims, reduced_shape
from dsl_compress.engine.mask_checks import align_dims, align_order, source_key
from dsl_compress.engine.mask_request import MaskRequest, Masks
from dsl_compress.plan import Key


def apply_align(
    requests: Sequence[MaskRequest], raw: Masks, shapes: Mapping[Key, tuple[int, ...]]
) -> None:
    """AND each align target's derived mask into ``raw``, sources before the targets using them.

    A position is kept when any source element in its slice is kept: the source mask is
    reduced over every dim not listed in ``dims`` (no reduction when ``dims`` lists them all),
    then placed on the target (see :func:`place_on_target`). ``shapes`` holds the full shape
    each mask stands for (:func:`mask_shapes`): the shape checks, run before, read it and
    never the mask, whose dims are 1 wherever a granularity keeps a whole dim.
    """
    by_key = {r.key: r for r in requests}
    for key in align_order(by_key):
        request = by_key[key]
        source = source_key(request)
        source_shape, dims = shapes[source], align_dims(request)
        reduced = reduce_source(raw[source], source_shape, dims)
        placed = place_on_target(reduced, request, reduced_shape(source_shape, dims))
        raw[key] = raw[key] & placed.to(raw[key].device) if key in raw else placed


def reduce_source(
    source: torch.Tensor, source_shape: Sequence[int], dims: Sequence[int]
) -> torch.Tensor:
    """Any-reduce the source mask over the dims of ``source_shape`` not listed in ``dims``.

    The mask may have fewer dims than the shape (an aligned activation's broadcastable mask):
    it is read with leading dims of size 1, as broadcasting does.
    """
    missing = len(source_shape) - source.dim()
    if missing > 0:
        source = source.reshape((1,) * missing + tuple(source.shape))
    reduced = reduced_dims(dims, len(source_shape))
    return source.any(dim=reduced) if reduced else source


def place_on_target(
    reduced: torch.Tensor, request: MaskRequest, full: Sequence[int]
) -> torch.Tensor:
    """The reduced mask in the target's raw (broadcastable) mask shape.

    ``full`` is the reduced shape of the whole source (the mask may have 1 for its dims).
    Without a granularity the mask broadcasts over the target's trailing dims, as in NNI.
    With one, it is laid out on the target's blocks as :func:`block_layout` says for ``full``;
    a single value covers every block. The shape checks have run: the layout exists.
    """
    kernel = request.kernel
    if kernel is None:
        return reduced
    blocks = kernel.block_shape(request.shape, request.name)
    layout = block_layout(full, request.shape, blocks)
    return kernel.expand(
        _onto_blocks(reduced.expand(tuple(full)), layout, blocks), request.shape, full=False
    )


def _onto_blocks(
    reduced: torch.Tensor, layout: BlockLayout, blocks: tuple[int, ...]
) -> torch.Tensor:
    if not layout.split:
        return reduced.reshape(()).expand(blocks)
    values = reduced.reshape(layout.split)
    if layout.inner:
        values = values.any(dim=layout.inner)
    return values.reshape(blocks)
