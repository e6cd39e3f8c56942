"""explain --target: which tensors a selector picks (read as a statement reads it), what to say
when it picks none, and why a picked tensor has no settings."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Iterable

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity, did_you_mean
from dsl_compress.language.format import render_selector
from dsl_compress.language.parse import parse_selector
from dsl_compress.language.syntax import Path, Selector
from dsl_compress.plan import Plan
from dsl_compress.resolve.check import CheckedRules
from dsl_compress.resolve.findings import nothing_matched
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.resolve.selectors import CompiledSelector, compile_selector
from dsl_compress.vocab import INPUT_PREFIX, OUTPUT_PREFIX

ORIGIN = "--target"


@dataclass(frozen=True)
class TargetSelection:
    """The modules a --target selector matched and the targets it names (None: every one)."""

    text: str
    modules: tuple[str, ...]
    targets: tuple[str, ...] | None

    @cached_property
    def _module_set(self) -> frozenset[str]:
        return frozenset(self.modules)

    def picks(self, module: str, target: str) -> bool:
        return module in self._module_set and (self.targets is None or target in self.targets)


def select_target(text: str, index: ModelIndex, plan: Plan) -> TargetSelection:
    """The tensors ``text`` selects, with the rules' meaning of every wildcard; raises
    CompressionError (L106, with a suggestion) when it selects no tensor of the model."""
    selector = parse_selector(text, ORIGIN)
    selection, compiled = _selection(selector, text, index, plan)
    if not _selects_a_tensor(selection, index, plan):
        raise CompressionError([_nothing_selected(selection, compiled, index, plan)])
    return selection


def _selection(
    selector: Selector, text: str, index: ModelIndex, plan: Plan
) -> tuple[TargetSelection, CompiledSelector]:
    planned = frozenset(entry.target for entry in plan.entries)
    compiled = _compiled(selector, planned)
    if not compiled.names(index):
        compiled = _read_as_parameter(selector, planned, index) or compiled
    return TargetSelection(text, tuple(compiled.names(index)), compiled.targets), compiled


def _selects_a_tensor(selection: TargetSelection, index: ModelIndex, plan: Plan) -> bool:
    return any(selection.picks(e.module, e.target) for e in plan.entries) or any(
        True for _ in tensors_without_plan(selection, index, plan)
    )


def tensors_without_plan(
    selection: TargetSelection, index: ModelIndex, plan: Plan
) -> Iterable[tuple[str, str]]:
    """Selected (module, target) pairs the plan has no entry for, in model order: the targets
    the selector names, else the module's own parameters."""
    planned = {(entry.module, entry.target) for entry in plan.entries}
    for module in selection.modules:
        for target in selection.targets or _parameters(index, module):
            if (module, target) not in planned and _has(index, module, target):
                yield module, target


def _compiled(selector: Selector, target_words: frozenset[str]) -> CompiledSelector:
    compiled, errors = compile_selector(selector, target_words)
    if compiled is None:
        raise CompressionError([replace(d, subject=ORIGIN) for d in errors])
    return compiled


def _read_as_parameter(
    selector: Selector, planned: frozenset[str], index: ModelIndex
) -> CompiledSelector | None:
    """`cm.p2` where no module is named so: p2 a parameter of cm, as a statement reads it."""
    segments = selector.path.segments
    last = segments[-1] if len(segments) > 1 else None
    if last is None or last.braced or set("*{") & set(last.text):
        return None
    compiled = _compiled(selector, planned | {last.text})
    return compiled if compiled.names(index) else None


def _parameters(index: ModelIndex, module: str) -> list[str]:
    return [name for name, p in index.modules[module]._parameters.items() if p is not None]


def _has(index: ModelIndex, module: str, target: str) -> bool:
    """Whether the module has the target: an input or output, or a parameter of its own."""
    return target.startswith((INPUT_PREFIX, OUTPUT_PREFIX)) or target in _parameters(index, module)


def _nothing_selected(
    selection: TargetSelection, compiled: CompiledSelector, index: ModelIndex, plan: Plan
) -> Diagnostic:
    text, modules = selection.text, selection.modules
    if modules:
        shown = ", ".join(modules[:3]) + (", ..." if len(modules) > 3 else "")
        lacking = ", ".join(selection.targets or ()) or "a parameter of its own"
        message = (
            f"--target '{text}' matches {len(modules)} module(s) ({shown}), none with {lacking}"
        )
    else:
        message = f"--target '{text}' matches no module of the model"
    hint = _wildcard_hint(compiled.source, index, plan)
    hint = hint or did_you_mean(text, _tensor_names(index, plan))
    if hint is None and not modules:
        hint = nothing_matched(index, compiled, "target").hint
    hint = hint or "a selector reads as in a statement: '*' within one dotted segment, '**' across"
    return Diagnostic("L106", Severity.ERROR, message, subject=ORIGIN, hint=hint)


def _wildcard_hint(selector: Selector, index: ModelIndex, plan: Plan) -> str | None:
    """A '*' at the end matches one more module-name segment, as in rules: say which of '**'
    (everything below) and the modules themselves would select tensors."""
    segments = selector.path.segments
    if selector.path.regex is not None or not segments or segments[-1].text != "*":
        return None
    below = replace(segments[-1], options=("**",))
    offers = [(segments[:-1] + (below,), "every tensor below")]
    if len(segments) > 1:
        offers.append((segments[:-1], "the modules' own tensors"))
    found = []
    for written, what in offers:
        alternative = replace(selector, path=Path(written))
        text = render_selector(alternative)
        if _selects_a_tensor(_selection(alternative, text, index, plan)[0], index, plan):
            found.append(f"'{text}' for {what}")
    if not found:
        return None
    return "'*' matches one dotted segment of a module name, as in rules; write " + (
        ", or ".join(found)
    )


def _tensor_names(index: ModelIndex, plan: Plan) -> list[str]:
    names = [f"{entry.module}.{entry.target}" for entry in plan.entries]
    for module in index.modules:
        names.extend(f"{module}.{p}" if module else p for p in _parameters(index, module))
    return list(dict.fromkeys(names))


def why_no_settings(checked: CheckedRules, index: ModelIndex, module: str, target: str) -> list:
    """Why a tensor gets no settings: the excludes and excepts that removed its module, the
    statements that select the module but not this target; empty when no statement selects it."""
    reasons = []
    removed_from = set()
    for rule in checked.excludes:
        if module in rule.selector.names(index):
            kind = f" from {rule.mode.value}" if rule.mode is not None else ""
            reasons.append(f"excluded{kind} by {rule.span} (exclude {_text(rule.selector)})")
            removed_from |= {rule.mode}
    for rule in checked.rules:
        selectors = [rule.selector] + ([rule.fallback] if rule.fallback is not None else [])
        if not any(module in s.names(index) for s in selectors):
            continue
        kind = rule.mode.value
        if None in removed_from or rule.mode in removed_from:
            continue
        excepted = [s for s in rule.excepts if module in s.names(index)]
        if excepted:
            reasons.append(
                f"removed by 'except {_text(excepted[0])}' of the {kind} statement at {rule.span}"
            )
        else:
            reasons.append(f"the {kind} statement at {rule.span} selects {module}, not {target}")
    return reasons


def _text(compiled: CompiledSelector) -> str:
    return render_selector(compiled.source)
