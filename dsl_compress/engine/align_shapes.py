"""Align shape arithmetic, torch-free: whether a source mask reduced over some dims fits a target."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Sequence

# The linter imports this module to check align partners without loading torch, so it must
# not import torch, even inside a function.


class AlignMisfit(enum.Enum):
    """Why an aligned mask does not fit its target."""

    DIMS_OUT_OF_RANGE = "dims out of range"
    SHAPE = "shape does not fit"


@dataclass(frozen=True)
class BlockLayout:
    """How a reduced mask is laid out on granularity blocks.

    The mask is reshaped to ``split`` and any-reduced over ``inner`` (the element dims of the
    target dims it covers in elements); an empty ``split`` means a single value for every block.
    """

    split: tuple[int, ...]
    inner: tuple[int, ...]


def align_misfit(
    source_shape: Sequence[int],
    dims: Sequence[int],
    target_shape: Sequence[int],
    blocks: Sequence[int] | None,
) -> AlignMisfit | None:
    """Why the source mask, reduced over the dims not in ``dims``, does not fit the target.

    ``blocks`` is the target's granularity block shape, None without a granularity. None
    means it fits.
    """
    if not dims_in_range(dims, len(source_shape)):
        return AlignMisfit.DIMS_OUT_OF_RANGE
    if not fits(reduced_shape(source_shape, dims), target_shape, blocks):
        return AlignMisfit.SHAPE
    return None


def dims_in_range(dims: Sequence[int], rank: int) -> bool:
    return all(-rank <= d < rank for d in dims)


def reduced_dims(dims: Sequence[int], rank: int) -> tuple[int, ...]:
    """The dims of a rank-``rank`` source that are reduced away: every dim not listed in ``dims``."""
    kept = {d % rank for d in dims}
    return tuple(d for d in range(rank) if d not in kept)


def reduced_shape(source_shape: Sequence[int], dims: Sequence[int]) -> tuple[int, ...]:
    removed = set(reduced_dims(dims, len(source_shape)))
    return tuple(size for d, size in enumerate(source_shape) if d not in removed)


def fits(reduced: Sequence[int], target_shape: Sequence[int], blocks: Sequence[int] | None) -> bool:
    """Whether a reduced mask lays out on the target: by broadcasting, or onto its blocks."""
    if blocks is None:
        return broadcasts(reduced, target_shape)
    return block_layout(reduced, target_shape, blocks) is not None


def broadcasts(shape: Sequence[int], target: Sequence[int]) -> bool:
    """Whether ``shape`` broadcasts to exactly ``target`` (torch's broadcasting rules)."""
    if len(shape) > len(target):
        return False
    return all(s in (t, 1) for s, t in zip(reversed(shape), reversed(target)))


def block_layout(
    reduced: Sequence[int], target_shape: Sequence[int], blocks: Sequence[int]
) -> BlockLayout | None:
    """The layout of a reduced mask on the target's blocks, or None when it does not fit.

    The mask's non-unit dims map in order onto the target's dims that hold more than one
    block; each mapped size must equal that dim's block count, or its size in elements (a
    block is then kept if any element in it is kept).
    """
    sizes = [s for s in reduced if s != 1]
    if not sizes:
        return BlockLayout((), ())
    mapped = [d for d, n in enumerate(blocks) if n > 1]
    if len(sizes) != len(mapped):
        return None
    split: list[int] = []
    inner: list[int] = []
    for size, dim in zip(sizes, mapped):
        if size == blocks[dim]:
            split.append(size)
        elif size == target_shape[dim]:
            split.extend((blocks[dim], size // blocks[dim]))
            inner.append(len(split) - 1)
        else:
            return None
    return BlockLayout(tuple(split), tuple(inner))
