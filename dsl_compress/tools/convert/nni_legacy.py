"""NNI 2.x configs as NNI 3.0 reads them: when the list's first config is 2.x, `exclude: True`
configs become excludes of every config, `op_partial_names` regexes and `sparsity` a weight
ratio; the 2.x keys NNI 3.0's own translation breaks on are K103 notes."""

from __future__ import annotations

import copy
from typing import Any

from dsl_compress.diagnostics import Diagnostic, warning
from dsl_compress.vocab import Mode

_LEGACY_TRIGGERS = ("exclude", "sparsity", "sparsity_per_layer", "total_sparsity", "quant_types")
_BROKEN = {
    "total_sparsity": "NNI 3.0 translates it into the key group_id, which its own schema rejects",
    "quant_types": "NNI 3.0's translation leaves out the quant_dtype its schema requires",
}
_SELECTION = ("op_types", "op_names", "op_names_re")


def translate_legacy(config_list: Any, mode: Mode) -> tuple[Any, list[Diagnostic], list[int]]:
    """``config_list`` as NNI 3.0 translates it, the notes, and the source index of each config
    kept (an ``exclude: True`` config is dropped into the others' excludes); a list whose first
    config is not NNI 2.x is returned as it is (NNI 3.0 then rejects any 2.x key, and so do
    we)."""
    if not isinstance(config_list, list) or not config_list:
        return config_list, [], list(range(len(config_list or ())))
    first = config_list[0]
    if not isinstance(first, dict) or not any(k in first for k in _LEGACY_TRIGGERS):
        return config_list, [], list(range(len(config_list)))
    notes: list[Diagnostic] = []
    excluded: dict[str, list] = {"exclude_op_" + k[3:]: [] for k in _SELECTION}
    kept, indices = [], []
    for i, config in enumerate(copy.deepcopy(config_list)):
        where = f"config_list[{i}]"
        if config.pop("exclude", False):
            for key in _SELECTION:
                excluded["exclude_op_" + key[3:]].extend(config.get(key) or [])
            notes.append(_global_exclude(where))
            continue
        broken = [k for k in _BROKEN if k in config]
        if broken:
            notes.extend(_broken(where, key) for key in broken)
            continue
        kept.append(_translated(config))
        indices.append(i)
    for config in kept:
        for key, values in excluded.items():
            if values:
                config[key] = list(config.get(key) or []) + values
    return kept, notes, indices


def _translated(config: dict) -> dict:
    partial = config.pop("op_partial_names", None)
    if partial:
        config["op_names_re"] = list(config.get("op_names_re") or [])
        config["op_names_re"] += [f".*{p}.*" for p in partial]
    ratio = config.pop("sparsity", config.pop("sparsity_per_layer", None))
    if ratio is not None:
        weight = {"sparse_ratio": float(ratio), "granularity": "default"}
        top = config.pop("max_sparsity_per_layer", None)
        if top is not None:
            weight["max_sparse_ratio"] = top
        config["target_names"] = ["weight", "bias"]
        config["target_settings"] = {"weight": weight}
    return config


def _global_exclude(where: str) -> Diagnostic:
    return warning(
        "K107",
        f"{where} has exclude: True: NNI 3.0's translation of NNI 2.x lists removes its "
        "modules from EVERY config of the list (not only the later ones); written as exclude "
        "statements",
        subject=where,
        hint="in NNI 3.0 syntax, write exclude_op_* keys in the configs concerned",
    )


def _broken(where: str, key: str) -> Diagnostic:
    return warning(
        "K103",
        f"not converted: {where} {key}, because {_BROKEN[key]}",
        subject=where,
        hint="write the NNI 3.0 keys (sparse_ratio, global_group_id, quant_dtype) instead",
    )
