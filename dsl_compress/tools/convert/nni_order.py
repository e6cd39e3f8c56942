"""NNI's first-wins order made explicit: which configs may configure one tensor, and the order
of their statements under which .rules precedence (specificity, then the later statement)
gives NNI's result; what the order alone cannot settle without a model is a K106 note."""

from __future__ import annotations

import heapq
import re
from typing import Any, Mapping, Sequence

from dsl_compress.diagnostics import Diagnostic, warning
from dsl_compress.tools.convert.nni_selectors import module_selectors, specificity
from dsl_compress.vocab import Mode


def ordered_configs(
    config_list: Sequence[Mapping[str, Any]], mode: Mode, model: Any
) -> tuple[list[int], dict[int, str], list[Diagnostic]]:
    """The configs' order, a comment per moved config, and the notes. Of two configs that may
    configure one tensor with equally specific selectors, the later is written first (.rules
    lets the later statement win, NNI the first config)."""
    selected = _selections(config_list, model)
    before: dict[int, set[int]] = {i: set() for i in range(len(config_list))}
    comments: dict[int, str] = {}
    notes: list[Diagnostic] = []
    for j in range(len(config_list)):
        for i in range(j):
            if not _overlap(config_list[i], config_list[j], selected, i, j):
                continue
            levels_i, levels_j = _levels(config_list[i]), _levels(config_list[j])
            if levels_i & levels_j:
                before[i].add(j)
                comments[j] = _moved(i, j)
                notes.append(_moved_note(i, j))
                if model is None and _adds_keys(config_list, i, j):
                    notes.append(_unverified(i, j))  # its extra keys still merge in
            elif model is None and (max(levels_j) > min(levels_i) or _adds_keys(config_list, i, j)):
                notes.append(_unverified(i, j))
    return _topological(before), comments, notes


def _selections(config_list, model: Any) -> list[set[str]] | None:
    """With a model, the module names each config selects (NNI's selection); else None."""
    if model is None:
        return None
    from dsl_compress.resolve.from_config import select
    from dsl_compress.resolve.model_index import ModelIndex

    index = ModelIndex.of(model)
    return [set(select(index, c, f"config_list[{i}]")[0]) for i, c in enumerate(config_list)]


def anchoring_notes(config_list: Sequence[Mapping[str, Any]], model: Any) -> list[Diagnostic]:
    """K102 for each op_names_re that, anchored at the start only (NNI's re.match), selects
    module names a whole-name match would not: the surprise is in the source, kept faithfully."""
    from dsl_compress.resolve.model_index import ModelIndex

    names = list(ModelIndex.of(model).modules)
    notes = []
    for i, config in enumerate(config_list):
        for pattern in config.get("op_names_re") or []:
            extra = [n for n in names if re.match(pattern, n) and not re.fullmatch(pattern, n)]
            if extra:
                notes.append(_anchored(i, pattern, extra))
    return notes


def _anchored(i: int, pattern: str, extra: list[str]) -> Diagnostic:
    shown = ", ".join(extra[:4]) + (f" and {len(extra) - 4} more" if len(extra) > 4 else "")
    return warning(
        "K102",
        f"op_names_re {pattern!r} also selects {shown}: NNI's re.match anchors only the start "
        "of the name (converted as it selects, to a whole-name regex)",
        subject=f"config_list[{i}]",
        hint=f"if only whole names were meant, write {pattern + '$'!r} in the source",
    )


def _overlap(a: Mapping, b: Mapping, selected, i: int, j: int) -> bool:
    """Whether two configs may configure one tensor: shared modules (known with a model; without
    one, unless both name disjoint modules or types only) and a shared target."""
    if not _targets_meet(a, b):
        return False
    if selected is not None:
        return bool(selected[i] & selected[j])
    for key in ("op_names", "op_types"):
        only = [set(c.get(key) or ()) for c in (a, b) if _selects_only_by(c, key)]
        if len(only) == 2:
            return bool(only[0] & only[1])
    return True


def _selects_only_by(config: Mapping, key: str) -> bool:
    others = {"op_names", "op_names_re", "op_types"} - {key}
    return bool(config.get(key)) and not any(config.get(k) for k in others)


def _targets_meet(a: Mapping, b: Mapping) -> bool:
    targets = [_targets(c) for c in (a, b)]
    return None in targets or bool(targets[0] & targets[1])


def _targets(config: Mapping) -> set[str] | None:
    names = config.get("target_names")
    if names is None:
        return None
    found = set(names) | set(config.get("target_settings") or {})
    return {t + "0" if t in ("_input_", "_output_") else t for t in found}


def _levels(config: Mapping) -> set[float]:
    return {specificity(s) for s in module_selectors(config)}


def _adds_keys(config_list, i: int, j: int) -> bool:
    """Whether the later config sets a key the earlier does not (.rules merges keys)."""
    return bool(_keys(config_list[j]) - _keys(config_list[i]))


def _keys(config: Mapping) -> set[str]:
    keys = set(config) - {"op_names", "op_names_re", "op_types", "target_names"}
    for setting in (config.get("target_settings") or {}).values():
        keys |= set(setting)
    return {k for k in keys if not k.startswith("exclude_") and k != "target_settings"}


def _topological(before: dict[int, set[int]]) -> list[int]:
    """The source order, changed only where a config must come before another."""
    waiting = {i: set(js) for i, js in before.items()}
    ready = [i for i, js in waiting.items() if not js]
    heapq.heapify(ready)
    out: list[int] = []
    while ready:
        j = heapq.heappop(ready)
        out.append(j)
        for i, js in waiting.items():
            if j in js:
                js.discard(j)
                if not js:
                    heapq.heappush(ready, i)
    return out


def _moved(i: int, j: int) -> str:
    return (
        f"written before config_list[{i}]: both can configure one tensor, and NNI's first "
        f"config wins where .rules lets the later statement win"
    )


def _moved_note(i: int, j: int) -> Diagnostic:
    return warning(
        "K101",
        f"config_list[{j}] is written before config_list[{i}]: both can configure one tensor "
        f"and NNI gives it config_list[{i}]'s setting (first config wins)",
        subject=f"config_list[{j}]",
        hint="nothing to fix; the output says so in a comment",
    )


def _unverified(i: int, j: int) -> Diagnostic:
    return warning(
        "K106",
        f"config_list[{j}] may configure a tensor config_list[{i}] configures first; without "
        "a model convert cannot tell whether .rules precedence gives NNI's first-wins result",
        subject=f"config_list[{j}]",
        hint="convert with --model SPEC or --manifest FILE to check and repair it per tensor",
    )
