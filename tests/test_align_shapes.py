"""align_shapes: torch-free align arithmetic that agrees with torch and with the engine's masks."""

from __future__ import annotations

import subprocess
import sys

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_compress.diagnostics import CompressionError
from dsl_compress.engine.align import place_on_target, reduce_source
from dsl_compress.engine.align_shapes import AlignMisfit, align_misfit, broadcasts
from dsl_compress.engine.mask_request import MaskRequest
from dsl_compress.vocab import TargetKind

SHAPES = st.lists(st.sampled_from([0, 1, 2, 3, 4, 6]), max_size=3).map(tuple)
# Zero-size targets are left out below: BlockKernel.expand divides by their block count.
NONEMPTY_SHAPES = st.lists(st.sampled_from([1, 2, 3, 4, 6]), max_size=3).map(tuple)
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True)
GRANULARITIES = st.sampled_from(
    [None, "out_channel", "per_channel", [1], [2], [2, -1], [-1, 2], [2, 2], [[2], "back", -1]]
)


def test_align_shapes_does_not_load_torch() -> None:
    probe = "import sys, dsl_compress.engine.align_shapes; print('torch' in sys.modules)"
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


@PROPERTY
@given(NONEMPTY_SHAPES, NONEMPTY_SHAPES, st.lists(st.integers(-4, 3), max_size=3), GRANULARITIES)
def test_misfit_is_where_the_engine_fails_with_p509(source_shape, target_shape, dims, granularity):
    request = MaskRequest(
        "m", "t", TargetKind.PARAMETER, {"granularity": granularity}, target_shape
    )
    try:
        blocks = request.kernel.block_shape(target_shape) if request.kernel else None
    except CompressionError:
        return  # a granularity that does not fit the target: P501, before any align arithmetic
    source = torch.ones(source_shape, dtype=torch.bool)
    try:
        place_on_target(reduce_source(source, dims, request), request, "p.w")
        engine = None
    except CompressionError as exc:
        assert [d.code for d in exc.diagnostics] == ["P509"]
        engine = "range" if "out of range" in str(exc) else "shape"
    expected = {None: None, "range": AlignMisfit.DIMS_OUT_OF_RANGE, "shape": AlignMisfit.SHAPE}
    assert align_misfit(source_shape, dims, target_shape, blocks) is expected[engine]
