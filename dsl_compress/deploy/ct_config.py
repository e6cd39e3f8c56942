"""config.json's ``quantization_config`` for a compressed-tensors checkpoint: the schemes grouped,
each group's targets written as anchored patterns that match exactly its modules."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

from dsl_compress.deploy.ct_args import MIXED_PRECISION, ModuleScheme

# The compressed-tensors release whose layout the tensors follow (dense cross-word packing of
# 3-, 5-, 6- and 7-bit values came with 0.18.0; older readers unpack those differently).
LAYOUT_VERSION = "0.18.0"


def quantization_config(
    schemes: Mapping[str, ModuleScheme], modules: Sequence[str], ignored: Iterable[str]
) -> dict[str, Any]:
    """The ``quantization_config`` of a checkpoint whose ``schemes`` (by module name) are
    quantized, among the model's ``modules`` (every name, for exact targets), ``ignored``
    listing the Linear modules left as they are."""
    groups: dict[ModuleScheme, list[str]] = {}
    for module, scheme in schemes.items():
        groups.setdefault(scheme, []).append(module)
    config_groups = {
        f"group_{index}": {"targets": exact_targets(names, modules), **scheme.to_json()}
        for index, (scheme, names) in enumerate(groups.items())
    }
    formats = {scheme.format for scheme in groups}
    return {
        "quant_method": "compressed-tensors",
        "format": formats.pop() if len(formats) == 1 else MIXED_PRECISION,
        "quantization_status": "compressed",
        "config_groups": config_groups,
        "ignore": sorted(ignored),
        "kv_cache_scheme": None,
        "sparsity_config": {},
        "global_compression_ratio": None,
        "version": LAYOUT_VERSION,
    }


def exact_targets(names: Sequence[str], modules: Sequence[str]) -> list[str]:
    """Targets that select exactly ``names`` among ``modules`` under compressed-tensors' rules
    (``re:`` patterns by ``re.match``, other targets by full name): the layers' numbers
    written ``\\d+`` and siblings joined, where that matches nothing else; the rest by name."""
    wanted = set(names)
    patterns = {_numbered(name): None for name in names}
    exact = [p for p in patterns if {m for m in modules if re.fullmatch(p, m)} <= wanted]
    covered = {name for name in names if any(re.fullmatch(p, name) for p in exact)}
    merged = [f"re:^{pattern}$" for pattern in _joined(exact)]
    return merged + [name for name in names if name not in covered]


def _numbered(name: str) -> str:
    """``name`` as a pattern with each all-digit segment (a layer's index) written ``\\d+``."""
    parts = [r"\d+" if part.isdigit() else re.escape(part) for part in name.split(".")]
    return r"\.".join(parts)


def _joined(patterns: Sequence[str]) -> list[str]:
    """Patterns that differ only in their last segment, joined: ``a\\.(q|k)``."""
    by_parent: dict[str, list[str]] = {}
    for pattern in patterns:
        parent, _, last = pattern.rpartition(r"\.")
        by_parent.setdefault(parent, []).append(last)
    joined = []
    for parent, lasts in by_parent.items():
        last = lasts[0] if len(lasts) == 1 else "(?:" + "|".join(lasts) + ")"
        joined.append(last if not parent else rf"{parent}\.{last}")
    return joined
