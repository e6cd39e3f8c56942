"""The mask stage's checks of an N:M mask_structure (P511), from settings and shapes alone."""

from __future__ import annotations

from dsl_compress.diagnostics import Diagnostic, error
from dsl_compress.engine.mask_request import MaskRequest
from dsl_compress.schema.mask_structure import (
    is_element_wise,
    parse_mask_structure,
    structure_conflicts,
)
from dsl_compress.vocab import TargetKind


def structure_problems(request: MaskRequest) -> list[tuple[str, Diagnostic]]:
    """(setting key at fault, P511) for an N:M mask_structure that other keys contradict or
    that the tensor's last dimension does not split into groups of M; an activation's
    mask_structure is P508, like every mask key on an activation."""
    value = request.get("mask_structure")
    if value is None or request.kind is not TargetKind.PARAMETER:
        return []
    structure = parse_mask_structure(value)
    if structure is None:  # a plan built by hand: config_lists and rules are checked earlier
        message = f"mask_structure {value!r} of {request.name} is not 'N:M' with 0 < N < M"
        return [("mask_structure", error("P511", message, subject=request.name))]
    element_wise = is_element_wise(request.get("granularity"))
    found = [
        (c.key, error("P511", c.message, subject=request.name, hint=c.hint))
        for c in structure_conflicts(structure, request.setting, element_wise)
    ]
    shape = request.shape
    if shape is not None and (not shape or shape[-1] % structure.group):
        found.append(("mask_structure", _shape_error(request, structure.group, str(structure))))
    return found


def _shape_error(request: MaskRequest, group: int, structure: str) -> Diagnostic:
    shape = list(request.shape or ())
    message = (
        f"shape {shape}: the last dimension does not split into groups of {group} consecutive "
        f"elements, as mask_structure='{structure}' needs"
    )
    hint = f"exclude {request.name}, or use an M that divides {shape[-1]}"
    if not shape:
        hint = f"exclude {request.name}: a scalar has no groups of elements"
    return error("P511", message, subject=request.name, hint=hint)
