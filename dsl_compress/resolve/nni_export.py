"""Rules without a model as an NNI 3.0 config_list: one config per statement, most specific first."""

from __future__ import annotations

import re
from typing import Any, Sequence

from dsl_compress.diagnostics import Diagnostic, Severity
from dsl_compress.vocab import Mode
from dsl_compress.plan import Plan
from dsl_compress.resolve.selectors import CompiledSelector
from dsl_compress.resolve.check import ExcludeRule, Rule
from dsl_compress.schema.key_sets import nni_key


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
