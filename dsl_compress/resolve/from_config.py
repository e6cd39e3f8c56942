"""The NNI path: a validated config_list and a model become a Plan (NNI 3.0's module selection,
canonicalisation, first config wins)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from dsl_compress.schema.config_list import SELECTION_KEYS, validate_config_list
from dsl_compress.diagnostics import (
    CompressionError,
    Diagnostic,
    Severity,
    did_you_mean,
    error,
    raise_errors,
    warning,
)
from dsl_compress.vocab import Mode, DEFAULT_METRIC
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.resolve.entries import EntryChecks
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.schema.registry import DEFAULT_REGISTRY, Registry
from dsl_compress.stand_in import StandInModule

if TYPE_CHECKING:
    import torch


def build_plan(
    model: torch.nn.Module | StandInModule,
    config_list: Sequence[Mapping[str, Any]],
    mode: Mode | str,
    *,
    registry: Registry | None = None,
    metric: str | None = None,
) -> Plan:
    """Resolve a config_list against a model (or a manifest's stand-in); raises CompressionError
    with every error found."""
    mode = Mode(mode)
    raise_errors(validate_config_list(config_list, mode))
    index = ModelIndex.of(model)
    entries, diags = _collect_entries(index, config_list, mode, registry or DEFAULT_REGISTRY)
    metric = (metric or DEFAULT_METRIC) if mode is Mode.PRUNE else None
    checks = EntryChecks(index)
    checked = []
    for entry in entries:
        resolved = checks.check(entry, metric, diags)
        if resolved is not None:
            checked.append(resolved)
    raise_errors(diags)
    return Plan(tuple(checked), tuple(d for d in diags if d.severity is not Severity.ERROR))


def _collect_entries(
    index: ModelIndex, config_list: Sequence[Mapping[str, Any]], mode: Mode, registry: Registry
) -> tuple[list[PlanEntry], list[Diagnostic]]:
    entries: dict[tuple[str, str], PlanEntry] = {}
    diags: list[Diagnostic] = []
    reported: set[str] = set()
    for i, config in enumerate(config_list):
        where = f"config_list[{i}]"
        names, found = select(index, config, where)
        diags.extend(found)
        public = {k: v for k, v in config.items() if k not in SELECTION_KEYS}
        for name in names:
            try:
                settings = registry[mode].get(index.modules[name], public)
            except CompressionError as exc:
                _add_once(diags, exc.diagnostics, where, name, reported)
                continue
            for target, setting in settings.items():
                _inherit_quant_dtype(mode, setting, public)
                _add_entry(entries, diags, index, mode, name, target, setting, public, where)
    return list(entries.values()), diags


def _inherit_quant_dtype(mode: Mode, setting: dict, public: Mapping) -> None:
    """A target added through target_settings without quant_dtype takes the config's.

    NNI requires quant_dtype in every target_settings entry, so this never changes the
    meaning of a config NNI accepts; without it such a target would silently be int8.
    """
    if mode is Mode.QUANTIZE and "quant_dtype" not in setting and "quant_dtype" in public:
        setting["quant_dtype"] = public["quant_dtype"]


def _add_once(diags: list, found: Sequence[Diagnostic], where: str, name: str, seen: set) -> None:
    for diag in found:
        if diag.message not in seen:
            seen.add(diag.message)
            diags.append(_relocate(diag, f"{where} (module '{name}')"))


def _relocate(diag: Diagnostic, subject: str) -> Diagnostic:
    return Diagnostic(diag.code, diag.severity, diag.message, subject=subject, hint=diag.hint)


def _add_entry(entries, diags, index, mode, name, target, setting, public, where) -> None:
    key = (name, target)
    if key in entries:
        first = entries[key].origin
        diags.append(
            warning(
                "S203",
                f"module '{name}' target '{target}': {where} is ignored because {first} "
                f"already configured it (the first config wins, as in NNI 3.0)",
                subject=where,
                hint=f"remove the setting from {where} or exclude '{name}' there",
            )
        )
        return
    entries[key] = PlanEntry(
        module=name,
        target=target,
        mode=mode,
        module_type=index.type_names[name],
        setting=setting,
        origin=where,
        key_origins=_key_origins(setting, public, target, where, index.type_names[name]),
    )


def _key_origins(
    setting: Mapping, public: Mapping, target: str, where: str, type_name: str
) -> dict:
    explicit = set(public) | set((public.get("target_settings") or {}).get(target, {}))
    return {k: (where if k in explicit else f"template {type_name}") for k in setting}


def select(
    index: ModelIndex, config: Mapping[str, Any], where: str
) -> tuple[list[str], list[Diagnostic]]:
    """Module names one config selects (canonical, model order) and what went wrong."""
    diags = _unknown_names(index, config.get("op_names") or [], where)
    chosen = set(config.get("op_names") or []) & set(index.modules)
    for pattern in config.get("op_names_re") or []:
        chosen |= {n for n in index.modules if re.match(pattern, n)}
    types = config.get("op_types") or []
    if types:
        by_type = index.of_types(types)
        chosen = (
            chosen & by_type if (config.get("op_names") or config.get("op_names_re")) else by_type
        )
    excluded = {id(index.modules[n]) for n in _excluded(index, config)}
    chosen = {n for n in chosen if id(index.modules[n]) not in excluded}
    names, alias_diags = _canonical(index, chosen, where)
    if not names and not diags:
        diags.append(_selects_nothing(index, config, where))
    return names, diags + alias_diags


def _excluded(index: ModelIndex, config: Mapping[str, Any]) -> set[str]:
    """Names the exclude_* keys match; excluding any name of a module excludes all its aliases."""
    names = set(config.get("exclude_op_names") or []) & set(index.modules)
    for pattern in config.get("exclude_op_names_re") or []:
        names |= {n for n in index.modules if re.match(pattern, n)}
    return names | index.of_types(config.get("exclude_op_types") or [])


def _unknown_names(index: ModelIndex, names: list[str], where: str) -> list[Diagnostic]:
    diags = []
    for name in names:
        if name not in index.modules:
            diags.append(
                error(
                    "S201",
                    f"op_names names '{name}', but the model has no module of that name",
                    subject=f"{where}.op_names",
                    hint=did_you_mean(name, index.modules)
                    or "list names with model.named_modules()",
                )
            )
    return diags


def _canonical(
    index: ModelIndex, chosen: set[str], where: str
) -> tuple[list[str], list[Diagnostic]]:
    """Collapse aliases of one module object onto its first name, reporting each alias."""
    ordered = sorted(chosen, key=index.order.__getitem__)
    diags = []
    for name in ordered:
        canon = index.canonical[name]
        if canon != name:
            diags.append(
                warning(
                    "S204",
                    f"'{name}' is the same module object as '{canon}'; it is configured once, as '{canon}'",
                    subject=where,
                    hint="select the module by one name only",
                )
            )
    return index.first_names(ordered), diags


def _selects_nothing(index: ModelIndex, config: Mapping[str, Any], where: str) -> Diagnostic:
    hints = []
    for t in config.get("op_types") or []:
        if not index.of_types([t]):
            hints.append(did_you_mean(t, set(index.type_names.values())))
    for pattern in config.get("op_names_re") or []:
        hints.append(did_you_mean(pattern, index.modules))
    hint = next((h for h in hints if h), None)
    return warning(
        "S202",
        f"{where} selects no module",
        subject=where,
        hint=hint or "check op_types, op_names, op_names_re and the exclude_* keys",
    )
