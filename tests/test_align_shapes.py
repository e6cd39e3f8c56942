"""align_shapes: torch-free align arithmetic that agrees with torch and with the engine's masks."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_compress.engine.align import place_on_target, reduce_source
from dsl_compress.engine.align_shapes import align_misfit, broadcasts, reduced_shape
from dsl_compress.engine.mask_checks import mask_problems, mask_shapes
from dsl_compress.engine.mask_request import MaskRequest
from dsl_compress.vocab import TargetKind

SHAPES = st.lists(st.sampled_from([0, 1, 2, 3, 4, 6]), max_size=3).map(tuple)
# Zero-size targets are left out below: BlockKernel.expand divides by their block count.
NONEMPTY_SHAPES = st.lists(st.sampled_from([1, 2, 3, 4, 6]), max_size=3).map(tuple)
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True)
GRANULARITIES = st.sampled_from(
    [None, "out_channel", "per_channel", [1], [2], [2, -1], [-1, 2], [2, 2], [[2], "back", -1]]
)


@pytest.mark.parametrize("module", ["align_shapes", "mask_checks"])
def test_shape_checks_do_not_load_torch(module: str) -> None:
    probe = f"import sys, dsl_compress.engine.{module}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@PROPERTY
@given(SHAPES, SHAPES)
def test_broadcasts_is_torchs_rule(shape: tuple[int, ...], target: tuple[int, ...]) -> None:
    try:
        expected = tuple(torch.broadcast_shapes(shape, target)) == target
    except RuntimeError:
        expected = False
    assert broadcasts(shape, target) is expected


@st.composite
def source_masks(draw) -> tuple[tuple[int, ...], torch.Tensor]:
    """A source shape and a mask for it, with some dims collapsed to 1 as a granularity does."""
    shape = draw(NONEMPTY_SHAPES)
    collapsed = [1 if draw(st.booleans()) else size for size in shape]
    values = draw(
        st.lists(st.booleans(), min_size=math.prod(collapsed), max_size=math.prod(collapsed))
    )
    return shape, torch.tensor(values, dtype=torch.bool).reshape(collapsed)


@PROPERTY
@given(source_masks(), NONEMPTY_SHAPES, st.lists(st.integers(-4, 3), max_size=3), GRANULARITIES)
def test_p509_depends_on_shapes_and_a_fitting_align_always_places(
    source, target_shape, dims, granularity
):
    source_shape, mask = source
    weight = MaskRequest("p", "w", TargetKind.PARAMETER, {"sparse_ratio": 0.5}, source_shape, mask)
    align = {"module_name": "p", "target_name": "w", "dims": dims}
    setting = {"align": align, "granularity": granularity}
    target = MaskRequest("m", "t", TargetKind.PARAMETER, setting, target_shape)
    codes = [p.diagnostic.code for p in mask_problems([weight, target])]
    if "P501" in codes:
        return  # a granularity that does not fit the target: no align arithmetic
    blocks = target.kernel.block_shape(target_shape) if target.kernel else None
    misfit = align_misfit(source_shape, dims, target_shape, blocks)
    assert codes == ([] if misfit is None else ["P509"])
    if misfit is None:
        full = mask_shapes({weight.key: weight, target.key: target})[weight.key]
        reduced = reduce_source(mask, full, dims)
        placed = place_on_target(reduced, target, reduced_shape(full, dims))
        assert tuple(torch.broadcast_shapes(placed.shape, target_shape)) == target_shape
