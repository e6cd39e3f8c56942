"""Rules without a model as an NNI 3.0 config_list: one config per statement, most specific first."""

from __future__ import annotations

import re
from typing import Any, Sequence

from dsl_compress.diagnostics import Diagnostic, Severity, Span, span_of_origin
from dsl_compress.vocab import Mode
from dsl_compress.plan import Plan
from dsl_compress.resolve.config_input import ConfigInput
from dsl_compress.resolve.selectors import CompiledSelector
from dsl_compress.resolve.check import ExcludeRule, Rule
from dsl_compress.schema.checks import subject_of
from dsl_compress.schema.key_sets import nni_key
from dsl_compress.schema.mask_structure import parse_mask_structure

# Keys of ours that no NNI 3.0 config can hold: exporting them is E223, never a silent drop.
_NOT_NNI = ("mask_structure",)


def static_config_list(
    rules: Sequence[Rule], excludes: Sequence[ExcludeRule], diags: list[Diagnostic]
) -> dict[str, list[dict]]:
    """Configs ordered so NNI's first-wins matches our precedence per target.

    Per-key merging between statements needs the model (compile with one for an exact list).
    """
    out: dict[str, list[dict]] = {m.value: [] for m in Mode}
    exportable = []
    for exclude in excludes:
        if exclude.selector.type_name is not None and exclude.selector.scope_pattern is not None:
            message = "NNI's exclude keys cannot say 'this type inside this scope'"
            diags.append(_needs_model(message, exclude.span))
        else:
            exportable.append(exclude)
    shared = {m: _exclusions([e.selector for e in exportable if e.mode in (None, m)]) for m in Mode}
    for rule in sorted(rules, key=lambda r: (r.selector.specificity, r.index), reverse=True):
        if rule.is_align:
            diags.append(_needs_model("align statements are expanded only with a model", rule.span))
            continue
        out[rule.mode.value].append(_config(rule, shared[rule.mode]))
    for mode in Mode:
        if len(out[mode.value]) > 1:
            message = (
                f"without a model each {mode.value} statement is one config and NNI takes a "
                "target's whole setting from the first config that matches it; keys from "
                "different statements merge only when compiled with a model"
            )
            diags.append(_needs_model(message, None, subject=f"config_list['{mode.value}']"))
    return out


def inexpressible_rules(rules: Sequence[Rule]) -> list[Diagnostic]:
    """E223 at each statement NNI cannot express (see _NOT_NNI), for a model-free export."""
    return [
        _not_nni(key, rule.values[key].value, rule.span, "this statement")
        for rule in rules
        for key in _NOT_NNI
        if key in rule.values
    ]


def inexpressible_entries(plan: Plan) -> list[Diagnostic]:
    """E223 once per statement (or config) that gave some tensor a key NNI cannot express,
    naming the statement and the tensors, for the export of a plan."""
    found: dict[tuple[str, str], list[str]] = {}
    values: dict[tuple[str, str], object] = {}
    for entry in plan.entries:
        for key in (k for k in _NOT_NNI if entry.get(k) is not None):
            origin = entry.key_origins.get(key, entry.origin)
            where = (key, plan.statement_of(origin) or origin)
            found.setdefault(where, []).append(f"{entry.module}.{entry.target}")
            values[where] = entry.setting[key]
    out = []
    for (key, origin), names in found.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        span = span_of_origin(origin)
        subject = None if span is not None else origin
        what = f"the statement that sets it on {shown}" if span else f"{origin} ({shown})"
        out.append(_not_nni(key, values[(key, origin)], span, what, subject))
    return out


def inexpressible_configs(config: ConfigInput) -> list[Diagnostic]:
    """E223 at each mask_structure of a config_list read as input (our extension), when it is
    to be exported to NNI again, located at its key in the file."""
    out = []
    for mode, config_list in config.lists.items():
        found = [
            _not_nni(key, value, None, subject, subject)
            for index, item in enumerate(config_list if isinstance(config_list, list) else [])
            for key, value, subject in _extension_keys(item, f"config_list[{index}]")
        ]
        out.extend(config.located(mode, found))
    return out


def _extension_keys(config, where: str):
    """(key, value, subject) of every key of _NOT_NNI in one config and its target_settings."""
    if not isinstance(config, dict):
        return
    for key in _NOT_NNI:
        if key in config:
            yield key, config[key], subject_of(where, key)
    settings = config.get("target_settings")
    for target, setting in (settings.items() if isinstance(settings, dict) else ()):
        inner = subject_of(subject_of(where, "target_settings"), target)
        for key in (k for k in _NOT_NNI if isinstance(setting, dict) and k in setting):
            yield key, setting[key], subject_of(inner, key)


def _not_nni(
    key: str, value, span: Span | None, what: str, subject: str | None = None
) -> Diagnostic:
    structure = parse_mask_structure(value)
    meaning = f" ({structure.describe()})" if structure is not None else ""
    message = (
        f"{key}={value!r}{meaning} is N:M sparsity, which NNI 3.0 has no setting for: an NNI "
        f"config_list cannot express {what}"
    )
    hint = (
        "export the plan instead (compile --format plan, or apply, whose config_list.json "
        "keeps mask_structure for dsl-compress), or leave mask_structure out of what NNI gets"
    )
    return Diagnostic("E223", Severity.ERROR, message, span=span, subject=subject, hint=hint)


def mixed_metrics(plan: Plan) -> list[Diagnostic]:
    """W304 when pruning entries use several metrics: one NNI pruner has one."""
    metrics = sorted({e.metric for e in plan.of_mode(Mode.PRUNE) if e.metric})
    if len(metrics) < 2:
        return []
    message = (
        f"the plan prunes with several metrics ({', '.join(metrics)}); an NNI config_list has no "
        "metric, so one NNI pruner reproduces only the entries of its own metric"
    )
    hint = "split the rules per metric to export them to NNI"
    return [_needs_model(message, None, hint, subject="config_list['prune']")]


def _exclusions(selectors: Sequence[CompiledSelector]) -> dict[str, list[str]]:
    """exclude_op_* keys removing what the selectors match."""
    out: dict[str, list[str]] = {}
    for selector in selectors:
        for key, names in _selection(selector).items():
            out.setdefault("exclude_" + key, []).extend(names)
    return out


def _config(rule: Rule, shared: dict[str, list[str]]) -> dict[str, Any]:
    config = _selection(rule.selector)
    own = _exclusions(rule.excepts)
    for key in sorted(set(shared) | set(own)):
        # Without excepts every config shares one list (the excludes of its kind).
        config[key] = shared.get(key, []) + own[key] if key in own else shared[key]
    values = {nni_key(k): v.value for k, v in rule.values.items() if k != "metric"}
    targets = rule.selector.targets
    if targets is not None:
        config["target_names"] = list(targets)
        config["target_settings"] = {t: dict(values) for t in targets}
        if rule.mode is Mode.QUANTIZE:
            config["quant_dtype"] = values.get("quant_dtype")
    else:
        config.update(values)
        if rule.mode is Mode.QUANTIZE:
            config.setdefault("quant_dtype", None)
    return config


def _needs_model(
    message: str,
    span,
    hint: str = "compile with a model for an exact config_list",
    subject: str | None = None,
) -> Diagnostic:
    return Diagnostic("W304", Severity.INFO, message, span=span, subject=subject, hint=hint)


def _selection(selector: CompiledSelector) -> dict[str, list[str]]:
    """NNI selection keys; NNI's re.match is anchored at the start, `$` anchors the end."""
    scope = selector.scope_pattern
    scoped = f"(?=(?:{scope})$)" if scope is not None else ""
    if selector.exact_name is not None:
        if scope is None:
            return {"op_names": [selector.exact_name]}
        return {"op_names_re": [scoped + re.escape(selector.exact_name) + "$"]}
    if selector.type_name is not None:
        selection = {"op_types": [selector.type_name]}
        if scope is not None:
            selection["op_names_re"] = [f"(?:{scope})$"]
        return selection
    return {"op_names_re": [f"{scoped}(?:{selector.name_pattern})$"]}
