"""Settling one tensor's keys: the winning statement per key (specificity, then order), the
conflicts between equally specific statements, and sparse_ratio against sparse_threshold."""

from __future__ import annotations

from typing import Any

from dsl_compress.resolve.contributions import Contribution, SettingKey
from dsl_compress.vocab import Mode, DEFAULT_METRIC
from dsl_compress.resolve.findings import Conflict, unregistered
from dsl_compress.schema.key_sets import nni_key, template_takes


def settle(key: SettingKey, type_name: str, found: list[Contribution], base: dict, registry, state):
    """Each key's winning value among ``found`` over the template's ``base``: the setting, where
    each key came from, the metric, the most specific statement and the keys of the conflicts
    found (``state.conflicts``; another tensor settled by the same statements shares them)."""
    mode, module, target = key
    top = max(found, key=lambda c: c.rank).rule
    state.matched.update(c.rule.index for c in found)
    if type_name not in registry[mode]:
        state.unregistered.setdefault((mode, type_name), unregistered(mode, type_name, top.span))
    setting, origins = dict(base), {k: f"template {type_name}" for k in base}
    extra: dict[str, Any] = {}
    ranks: dict[str, tuple] = {}
    conflicts: list[tuple] = []
    for name in sorted({k for c in found for k in c.values}):
        allowed = [
            c
            for c in found
            if name in c.values
            and (c.explicit or template_takes(base, nni_key(name)) or _extra(name))
        ]
        if not allowed:
            continue
        winner = max(allowed, key=lambda c: c.rank)
        state.won.add(winner.rule.index)
        conflicts.extend(_check_conflict(allowed, winner, name, state.conflicts))
        value = winner.values[name]
        (extra if _extra(name) else setting)[nni_key(name)] = value.value
        origins[nni_key(name)] = str(value.span)
        ranks[name] = winner.rank
    _one_goal(setting, origins, ranks)
    metric = extra.get("metric", DEFAULT_METRIC) if mode is Mode.PRUNE else None
    state.note_conflicts(conflicts, module, target)
    return setting, origins, metric, top, conflicts


def _extra(name: str) -> bool:
    return name == "metric"


def _one_goal(setting: dict, origins: dict, ranks: dict) -> None:
    """sparse_ratio and sparse_threshold are one choice: the more specific statement's stands."""
    if "sparse_ratio" in ranks and "sparse_threshold" in ranks:
        loser = min(("sparse_ratio", "sparse_threshold"), key=lambda k: ranks[k])
        setting[loser] = None
        origins.pop(loser, None)


def _check_conflict(allowed, winner: Contribution, name: str, conflicts: dict) -> list[tuple]:
    """Equally specific statements giving one tensor different values: the later wins, say so
    (once per pair of values, with every tensor they meet on)."""
    found = []
    for rival in allowed:
        if (
            rival is winner
            or rival.rule.selector.specificity != winner.rule.selector.specificity
            or rival.values[name].value == winner.values[name].value
        ):
            continue
        seen = (str(winner.values[name].span), str(rival.values[name].span), name)
        conflicts.setdefault(seen, Conflict(name, winner.values[name], rival.values[name]))
        found.append(seen)
    return found
