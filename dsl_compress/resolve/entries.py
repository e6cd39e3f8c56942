"""The checks every plan entry passes, whichever resolver made it: the target exists on the
module, the granularity fits the target, align names a module, mode-specific keys."""

from __future__ import annotations

from typing import Mapping

from dsl_compress.diagnostics import CompressionError, Diagnostic, did_you_mean, error, warning
from dsl_compress.plan import PlanEntry
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.resolve.targets import (
    check_input,
    check_parameter,
    tied_tensor_warning,
)
from dsl_compress.schema.granularity import BlockKernel, check_kind, parse_granularity
from dsl_compress.schema.registry import layout_granularity
from dsl_compress.vocab import Mode, TargetKind


class EntryChecks:
    """The entry checks of one resolution against one model, remembering the granularities
    checked so far (a large plan repeats a few)."""

    def __init__(self, index: ModelIndex) -> None:
        self.index = index
        # (value, target kind, mode, metric) -> whether the granularity is kept
        self._granularities: dict[tuple, bool] = {}

    def check(
        self, entry: PlanEntry, metric: str | None, diags: list[Diagnostic]
    ) -> PlanEntry | None:
        """The entry with its setting completed (None when it is dropped); problems go to
        ``diags``."""
        module = self.index.modules[entry.module]
        kind = entry.kind
        if kind is TargetKind.PARAMETER and not check_parameter(module, entry, diags):
            return None
        if kind is TargetKind.PARAMETER and entry.mode is not Mode.DISTILL:
            self._check_tied(module, entry, diags)
        if kind is TargetKind.INPUT:
            check_input(module, entry, diags)
        if entry.mode is Mode.DISTILL and kind is TargetKind.PARAMETER:
            message = (
                f"distillation compares outputs (or inputs), not the parameter '{entry.target}'"
            )
            diags.append(error("R302", message, subject=entry.subject, hint="use _output_"))
            return None
        setting = dict(entry.setting)
        try:
            self._resolve_granularity(setting, entry, metric)
        except CompressionError as exc:
            diags.extend(exc.diagnostics)
        _check_align_module_exists(self.index, setting, entry.subject, diags)
        _check_apply_method(setting, entry, diags)
        if entry.mode is Mode.DISTILL and isinstance(setting.get("lambda"), int):
            setting["lambda"] = float(setting["lambda"])
        return PlanEntry(
            entry.module,
            entry.target,
            entry.mode,
            entry.module_type,
            setting,
            entry.origin,
            dict(entry.key_origins),
            metric,
        )

    def _check_tied(self, module, entry: PlanEntry, diags: list[Diagnostic]) -> None:
        names = self.index.tied.get(id(module._parameters[entry.target]))
        if names:
            diags.append(tied_tensor_warning(entry, names))

    def _resolve_granularity(self, setting: dict, entry: PlanEntry, metric: str | None) -> None:
        if "granularity" not in setting:
            return
        value = setting["granularity"]
        if value == "default":
            # N:M groups are single elements, whatever the metric's default blocks are.
            structured = setting.get("mask_structure") is not None
            value = None if structured else _default_granularity(entry, metric)
        value = layout_granularity(entry.module_type, entry.target, value)
        setting["granularity"] = value
        if not self._granularity_kept(value, entry.kind, entry.mode, metric, entry.subject):
            setting["granularity"] = None

    def _granularity_kept(self, value, kind: TargetKind, mode: Mode, metric, subject: str) -> bool:
        """Check the granularity for the target kind; False when it means no blocks at all."""
        key = (repr(value), kind, mode, metric)
        if key not in self._granularities:
            check_kind(value, kind, subject)  # raises for this subject: never remembered
            blocks = metric != "fpgm" and _means_no_blocks(parse_granularity(value, subject), mode)
            self._granularities[key] = not blocks
        return self._granularities[key]


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


def _check_align_module_exists(
    index: ModelIndex, setting: Mapping, subject: str, diags: list
) -> None:
    """P503 when an align names a module the model does not have."""
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


def _check_apply_method(setting: Mapping, entry: PlanEntry, diags: list) -> None:
    if entry.mode is Mode.QUANTIZE and setting.get("apply_method") not in (None, "clamp_round"):
        diags.append(
            warning(
                "Q603",
                f"apply_method '{setting['apply_method']}' has no effect: quantization always "
                "uses clamp_round here, as NNI 3.0's quantizers overwrite it",
                subject=entry.subject,
                hint="remove apply_method from the quantization config",
                rules_hint="remove apply_method from the quantize statement",
            )
        )
