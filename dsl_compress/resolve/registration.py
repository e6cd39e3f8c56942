"""register statements: NNI-shape settings templates built from a .rules block."""

from __future__ import annotations

from typing import Any, Mapping

from dsl_compress.diagnostics import Diagnostic, located
from dsl_compress.language.syntax import Register, RegisterTarget
from dsl_compress.schema.presets import expand_scheme
from dsl_compress.resolve.setting_values import check_setting, evaluate
from dsl_compress.schema.key_sets import statement_keys
from dsl_compress.schema.keys import Statement
from dsl_compress.schema.registry import (
    Template,
    distill_template,
    pruning_bias_template,
    pruning_weight_template,
    quant_target_template,
)
from dsl_compress.vocab import Mode


def build_template(stmt: Register, lets: Mapping[str, Any], diags: list[Diagnostic]) -> Template:
    """The template NNI's page would register: defaults of the kind, then the block's keys."""
    template: Template = {}
    for target in stmt.targets:
        if target.name in template:
            diags.append(
                located("E212", f"target '{target.name}' is registered twice", target.span)
            )
            continue
        template[target.name] = _target_template(stmt.mode, target, lets, diags)
    for target in stmt.targets:
        source = (template.get(target.name) or {}).get("align")
        name = source.get("target_name") if isinstance(source, dict) else None
        if isinstance(name, str) and name not in template:
            message = f"'{target.name}' aligns to '{name}', which this block does not register"
            hint = f"register {name} in the block, or align to one of {', '.join(template)}"
            diags.append(located("E212", message, target.span, hint))
    if not template:
        diags.append(
            located(
                "E212", f"register {stmt.mode.value} {stmt.type_name} has no targets", stmt.span
            )
        )
    return template


def _target_template(mode: Mode, target: RegisterTarget, lets, diags: list) -> dict[str, Any]:
    values = _values(mode, target, lets, diags)
    if mode is Mode.DISTILL:
        base = distill_template()["_output_"]
    elif mode is Mode.QUANTIZE:
        base = quant_target_template()
    elif "align" in values:
        base = pruning_bias_template()
    else:
        base = pruning_weight_template()
    if "align" in values:
        source = values.pop("align")
        dims = values.pop("dims", [0])
        base["align"] = {"module_name": None, "target_name": source, "dims": dims}
    elif "dims" in values:
        diags.append(located("E212", "dims is only meaningful with align=TARGET", target.span))
        values.pop("dims")
    base.update(values)
    return base


def _values(mode: Mode, target: RegisterTarget, lets, diags: list) -> dict[str, Any]:
    allowed = statement_keys(mode, Statement.REGISTER)
    values: dict[str, Any] = {}
    for setting in target.settings:
        value = evaluate(setting.value, lets, False, diags)
        if setting.key == "align" and mode is Mode.PRUNE:
            if not isinstance(value, str):
                diags.append(
                    located("E212", "align= names a target of this template", setting.span)
                )
            values[setting.key] = value
            continue
        written = {other.key for other in target.settings}
        diags.extend(check_setting(mode, setting.key, value, setting, allowed, lets, written))
        values[setting.key] = value
    scheme = values.pop("scheme", None)
    if scheme is not None:
        values.update(expand_scheme(scheme, values))
    return values
