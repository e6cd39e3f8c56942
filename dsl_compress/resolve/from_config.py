"""Resolution: a validated config_list and a model become a Plan (selection, canonicalisation, precedence)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

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
from dsl_compress.schema.granularity import BlockKernel, check_kind, parse_granularity
from dsl_compress.vocab import TargetKind, Mode, DEFAULT_METRIC
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.resolve.model_index import ModelIndex, select
from dsl_compress.schema.registry import DEFAULT_REGISTRY, Registry
from dsl_compress.resolve.targets import check_input, check_parameter


def build_plan(
    model: torch.nn.Module,
    config_list: Sequence[Mapping[str, Any]],
    mode: Mode | str,
    *,
    registry: Registry | None = None,
    metric: str | None = None,
) -> Plan:
    """Resolve a config_list against a model; raises CompressionError with every error found."""
    mode = Mode(mode)
    raise_errors(validate_config_list(config_list, mode))
    index = ModelIndex.of(model)
    entries, diags = _collect_entries(index, config_list, mode, registry or DEFAULT_REGISTRY)
    metric = (metric or DEFAULT_METRIC) if mode is Mode.PRUNE else None
    checked = []
    for entry in entries:
        resolved = check_entry(index, entry, metric, diags)
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


def check_entry(
    index: ModelIndex, entry: PlanEntry, metric: str | None, diags: list[Diagnostic]
) -> PlanEntry | None:
    module = index.modules[entry.module]
    subject = entry.subject
    kind = entry.kind
    if kind is TargetKind.PARAMETER and not check_parameter(module, entry, diags):
        return None
    if kind is TargetKind.INPUT:
        check_input(module, entry, diags)
    if entry.mode is Mode.DISTILL and kind is TargetKind.PARAMETER:
        message = f"distillation compares outputs (or inputs), not the parameter '{entry.target}'"
        diags.append(error("R302", message, subject=entry.subject, hint="use _output_"))
        return None
    setting = dict(entry.setting)
    try:
        _resolve_granularity(setting, entry, metric, subject)
    except CompressionError as exc:
        diags.extend(exc.diagnostics)
    _check_align(index, setting, subject, diags)
    if entry.mode is Mode.QUANTIZE and setting.get("apply_method") not in (None, "clamp_round"):
        diags.append(
            warning(
                "Q603",
                f"apply_method '{setting['apply_method']}' has no effect: quantization always "
                "uses clamp_round here, as NNI 3.0's quantizers overwrite it",
                subject=subject,
                hint="remove apply_method from the quantization config",
            )
        )
    if entry.mode is Mode.DISTILL and isinstance(setting.get("lambda"), int):
        setting["lambda"] = float(setting["lambda"])
    origins = dict(entry.key_origins)
    return PlanEntry(
        entry.module,
        entry.target,
        entry.mode,
        entry.module_type,
        setting,
        entry.origin,
        origins,
        metric,
    )


def _resolve_granularity(setting: dict, entry: PlanEntry, metric: str | None, subject: str) -> None:
    if "granularity" not in setting:
        return
    value = setting["granularity"]
    if value == "default":
        value = _default_granularity(entry, metric)
        setting["granularity"] = value
    if not _granularity_kept(value, entry.kind, entry.mode, metric, subject):
        setting["granularity"] = None


# Checked granularities per (value, target kind, mode, metric): a large plan repeats a few.
_CHECKED: dict[tuple, bool] = {}


def _granularity_kept(value, kind: TargetKind, mode: Mode, metric: str | None, subject: str):
    """Check the granularity for the target kind; False when it means no blocks at all."""
    key = (repr(value), kind, mode, metric)
    if key not in _CHECKED:
        check_kind(value, kind, subject)  # raises for this subject: never cached
        blocks = metric != "fpgm" and _means_no_blocks(parse_granularity(value, subject), mode)
        if len(_CHECKED) > 4096:
            _CHECKED.clear()
        _CHECKED[key] = not blocks
        return not blocks
    return _CHECKED[key]


def _means_no_blocks(kernel: BlockKernel | str | None, mode: Mode) -> bool:
    """One-entry lists that say 'no blocks' at every rank: [1] when pruning, [[-1], 'back', -1]
    when quantizing (the forms Plan.to_config_list writes for None). FPGM is the exception:
    it compares blocks with each other, so one-element blocks are not 'no blocks' there."""
    if not isinstance(kernel, BlockKernel):
        return False
    unit = 1 if mode is Mode.PRUNE else -1
    return kernel.kernel == (unit,) and kernel.pad_value == unit


def _default_granularity(entry: PlanEntry, metric: str | None) -> str | None:
    """As NNI: level and quantization are element-wise/per-tensor, other pruners channel-wise."""
    if entry.mode is not Mode.PRUNE or metric == "level":
        return None
    return "out_channel" if entry.kind is TargetKind.PARAMETER else "per_channel"


def _check_align(index: ModelIndex, setting: Mapping, subject: str, diags: list) -> None:
    align = setting.get("align")
    if align is None or not isinstance(align, Mapping) or align.get("module_name") is None:
        return
    name = align["module_name"]
    if name not in index.modules:
        diags.append(
            error(
                "P503",
                f"align names module '{name}', which the model does not have",
                subject=subject,
                hint=did_you_mean(name, index.modules),
            )
        )
