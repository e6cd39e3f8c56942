"""The align stage's arithmetic: a source mask reduced over the dims an align does not list,
and laid out on the target's (blocks of its) shape."""

from __future__ import annotations

from typing import Sequence

import torch

from dsl_compress.engine.align_shapes import BlockLayout, block_layout, reduced_dims
from dsl_compress.engine.mask_request import MaskRequest


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
