"""N:M semi-structured sparsity (the `mask_structure` key): its value "N:M", what it means in
words, and the settings it cannot be combined with (torch-free: lint and the engine share it)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from dsl_compress.diagnostics import CompressionError, Diagnostic, error
from dsl_compress.schema.checks import KeyRule, found, is_number
from dsl_compress.schema.granularity import BlockKernel, parse_granularity

# llm-compressor's spelling and meaning: N pruned in every M consecutive elements along the
# input (last) dimension. torch and compressed-tensors count N kept, which agrees only for 2:4.
_PATTERN = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")
_EXPECTED = "a string 'N:M' with integers 0 < N < M: N pruned in every M consecutive elements"


@dataclass(frozen=True)
class MaskStructure:
    """N pruned in every group of M consecutive elements along a weight's last dimension."""

    pruned: int
    group: int

    @property
    def kept(self) -> int:
        return self.group - self.pruned

    @property
    def ratio(self) -> float:
        return self.pruned / self.group

    def describe(self) -> str:
        """The meaning in words, as explain and the docs say it."""
        return (
            f"prunes {self.pruned} of every {self.group} consecutive elements along the input "
            f"dimension, keeping {self.kept}"
        )

    def __str__(self) -> str:
        return f"{self.pruned}:{self.group}"


def parse_mask_structure(value: Any) -> MaskStructure | None:
    """The structure a valid value names; None for anything else (see MASK_STRUCTURE_RULE)."""
    match = _PATTERN.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    pruned, group = int(match[1]), int(match[2])
    return MaskStructure(pruned, group) if 0 < pruned < group else None


def _check_mask_structure(key: str, value: Any, subject: str) -> list[Diagnostic]:
    if parse_mask_structure(value) is not None:
        return []
    message = f"{key} must be {_EXPECTED}, got {found(value)}"
    return [error("C105", message, subject=subject, hint=_value_hint(value))]


def _value_hint(value: Any) -> str:
    if is_number(value) and 0 < value < 1:
        return f"{value:g} is a ratio: write sparse_ratio={value:g}, or e.g. '2:4' for N:M"
    if isinstance(value, str) and (numbers := re.findall(r"\d+", value)) and len(numbers) == 2:
        pruned, group = map(int, numbers)
        if 0 < pruned < group:
            return f"write it with a colon: '{pruned}:{group}'"
        return f"N counts the pruned elements of each group of M, so 0 < N < M (got {value!r})"
    return "write it quoted, e.g. '2:4' (prunes 2 of every 4 consecutive elements)"


MASK_STRUCTURE_RULE = KeyRule(_EXPECTED, _check_mask_structure)


# ---- what it cannot be combined with -------------------------------------------------------------


@dataclass(frozen=True)
class StructureConflict:
    """A key of the same setting that N:M pruning cannot honour, and why."""

    key: str
    message: str
    hint: str


def _ratio_differs(structure: MaskStructure, value: Any) -> bool:
    """A sparse_ratio may be left out or equal N/M."""
    if value is None:
        return False
    return not (is_number(value) and math.isclose(value, structure.ratio, abs_tol=1e-12))


def _set(value: Any) -> bool:
    return value is not None


# key -> (whether its value conflicts, why): each decided on purpose, in the order reported.
_CONFLICTS: dict[str, tuple[Callable[[MaskStructure, Any], bool], str]] = {
    "sparse_ratio": (
        _ratio_differs,
        "the ratio of an N:M structure is N/M",
    ),
    "sparse_threshold": (
        lambda s, v: _set(v),
        "a threshold masks a data-dependent number of elements per group",
    ),
    "global_group_id": (
        lambda s, v: _set(v),
        "a global group ranks its members together, not per group of M",
    ),
    "dependency_group_id": (
        lambda s, v: _set(v),
        "a dependency group shares one mask pruned per block, not per group of M",
    ),
    # Bounds that leave the ratio unbounded (min 0, max 1; NNI reads falsy as unset) are fine.
    "min_sparse_ratio": (
        lambda s, v: bool(v),
        "the ratio of an N:M structure is fixed at N/M",
    ),
    "max_sparse_ratio": (
        lambda s, v: bool(v) and v != 1,
        "the ratio of an N:M structure is fixed at N/M",
    ),
    "internal_metric_block": (
        lambda s, v: _set(v),
        "it pools the metric of a dependency group, which N:M pruning has none of",
    ),
    "align": (
        lambda s, v: _set(v),
        "an aligned mask would prune more and break the N of every M",
    ),
}


def is_element_wise(granularity: Any) -> bool:
    """Whether a granularity masks single elements: None, 'default' (which N:M resolves to
    None) or blocks of 1 at every rank."""
    try:
        kernel = parse_granularity(granularity, "granularity")
    except CompressionError:
        return True  # not a granularity at all: the granularity check reports it
    if kernel is None or kernel == "default":
        return True
    ones = isinstance(kernel, BlockKernel) and set(kernel.kernel) == {1}
    return ones and kernel.pad_value == 1


def structure_conflicts(
    structure: MaskStructure, setting: Mapping[str, Any], element_wise: bool
) -> list[StructureConflict]:
    """The keys of ``setting`` that cannot combine with ``structure``; ``element_wise`` says
    whether the resolved granularity masks single elements (N:M groups are elements)."""
    found_conflicts = []
    for key, (conflicts, why) in _CONFLICTS.items():
        if key in setting and conflicts(structure, setting[key]):
            found_conflicts.append(_conflict(structure, key, setting[key], why))
    if not element_wise:
        value = setting.get("granularity")
        why = "its groups of M are single elements along the last dimension"
        found_conflicts.append(_conflict(structure, "granularity", value, why))
    return found_conflicts


def _conflict(structure: MaskStructure, key: str, value: Any, why: str) -> StructureConflict:
    message = f"mask_structure='{structure}' cannot be combined with {key}={value!r}: {why}"
    if key == "sparse_ratio":
        hint = (
            f"remove sparse_ratio (mask_structure implies {structure.ratio:g}), or set "
            f"sparse_ratio={structure.ratio:g} where mask_structure is set"
        )
    elif key == "granularity":
        hint = "remove granularity (or set it to None) where mask_structure is set"
    else:
        hint = f"remove {key} for this tensor, or drop mask_structure"
    return StructureConflict(key, message, hint)
