"""explain: each tensor's statements, which one won each key and why; why a tensor has none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.resolve.ruleset import RuleSet
from dsl_compress.resolve.selectors import EXACT, PATTERN, TYPE
from dsl_compress.schema.key_sets import nni_key
from dsl_compress.schema.mask_structure import parse_mask_structure
from dsl_compress.tools.explain_target import select_target, tensors_without_plan, why_no_settings
from dsl_compress.vocab import Mode

if TYPE_CHECKING:
    import torch

    from dsl_compress.stand_in import StandInModule

_LEVELS = {EXACT: "exact name", PATTERN: "name pattern", TYPE: "type"}


@dataclass(frozen=True)
class Candidate:
    """One statement's value for one key of one tensor."""

    value: Any
    origin: str
    specificity: str
    expansion: str | None = None  # the preset the value came from (scheme=W4A16 → ...)


@dataclass(frozen=True)
class KeyDecision:
    key: str
    winner: Candidate
    reason: str
    others: tuple[Candidate, ...]


@dataclass(frozen=True)
class TensorExplanation:
    module: str
    target: str
    mode: Mode
    statements: tuple[str, ...]
    decisions: tuple[KeyDecision, ...]
    setting: dict[str, Any]
    metric: str | None


@dataclass(frozen=True)
class NoSettings:
    """A tensor --target selected that the plan leaves alone, and why (empty: no statement
    selects it)."""

    module: str
    target: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Explanation:
    """What explain found: the planned tensors, then the selected tensors without settings."""

    tensors: tuple[TensorExplanation, ...]
    unset: tuple[NoSettings, ...] = ()


def explain(
    ruleset: RuleSet, model: torch.nn.Module | StandInModule, target: str | None = None
) -> Explanation:
    """Every planned tensor, or those the selector ``target`` picks (read as a statement reads
    it), each with the statements that reached it and why each key's value won; with a target,
    also the tensors it picks that get no settings, and why. Raises CompressionError (L106)
    when ``target`` picks no tensor of the model."""
    compiled = ruleset.compile(model, trace=True)
    if target is None:
        return Explanation(tuple(_tensor(compiled, e) for e in compiled.plan.entries))
    index = ModelIndex.of(model)
    selection = select_target(target, index, compiled.plan)
    entries = [e for e in compiled.plan.entries if selection.picks(e.module, e.target)]
    unset = list(tensors_without_plan(selection, index, compiled.plan))
    checked = ruleset.check() if unset else None
    return Explanation(
        tuple(_tensor(compiled, e) for e in entries),
        tuple(NoSettings(m, t, tuple(why_no_settings(checked, index, m, t))) for m, t in unset),
    )


def _tensor(compiled, entry) -> TensorExplanation:
    found = compiled.contributions.get((entry.mode, entry.module, entry.target), [])
    statements = tuple(dict.fromkeys(str(c.rule.span) for c in found))
    decisions = tuple(d for d in (_decide(k, found, entry) for k in _keys(found)) if d)
    setting = {k: v for k, v in entry.setting.items() if v is not None}
    return TensorExplanation(
        entry.module, entry.target, entry.mode, statements, decisions, setting, entry.metric
    )


def _keys(found) -> list[str]:
    return sorted({k for c in found for k in c.values})


def _decide(key: str, found, entry) -> KeyDecision | None:
    """Why the value the plan holds for ``key`` won, among the statements that set it."""
    origin = entry.key_origins.get(nni_key(key))
    setters = [c for c in found if key in c.values]
    winners = [c for c in setters if str(c.values[key].span) == origin]
    if key == "metric":
        winners = [max(setters, key=lambda c: c.rank)]
    if not winners:
        return None
    winner = winners[0]
    others = tuple(_candidate(c, key) for c in setters if c is not winner)
    return KeyDecision(key, _candidate(winner, key), _reason(winner, setters), others)


def _candidate(contribution, key: str) -> Candidate:
    level, typed = contribution.rule.selector.specificity
    label = _LEVELS[level] + (" + type" if typed and level == PATTERN else "")
    value = contribution.values[key]
    return Candidate(value.value, str(value.span), label, value.expansion)


def _reason(winner, setters) -> str:
    rivals = [c for c in setters if c is not winner]
    if not rivals:
        return "the only statement that sets it"
    level = winner.rule.selector.specificity
    if all(c.rule.selector.specificity < level for c in rivals):
        return "more specific than every other statement that sets it"
    return "the latest of the most specific statements that set it"


def render_explanations(explanation: Explanation) -> str:
    """Plain text, one block per planned tensor, one per tensor that an exclude or except left
    without settings, and one naming the tensors no statement selects."""
    blocks = [_planned_block(item) for item in explanation.tensors]
    blocks.extend(_unset_block(item) for item in explanation.unset if item.reasons)
    unselected = [f"{i.module}.{i.target}" for i in explanation.unset if not i.reasons]
    if unselected:
        blocks.append(_unselected_block(unselected))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _planned_block(item: TensorExplanation) -> str:
    lines = [f"{item.module}.{item.target} ({item.mode.value})"]
    lines.append("  matched by: " + (", ".join(item.statements) or "-"))
    for d in item.decisions:
        lines.append(f"  {d.key} = {d.winner.value!r} from {d.winner.origin} ({d.reason})")
        if d.winner.expansion:
            lines.append(f"      preset: {d.winner.expansion}")
        meaning = _meaning(d.key, d.winner.value)
        if meaning:
            lines.append(f"      meaning: {meaning}")
        for other in d.others:
            lines.append(f"      not {other.value!r} from {other.origin} ({other.specificity})")
    final = ", ".join(f"{k}={v!r}" for k, v in item.setting.items())
    lines.append(f"  final: {final}" + (f", metric={item.metric}" if item.metric else ""))
    return "\n".join(lines)


def _meaning(key: str, value: Any) -> str | None:
    """A value whose spelling misleads, in words: N:M counts the pruned elements here, where
    torch and compressed-tensors count the kept ones (they agree only for 2:4)."""
    structure = parse_mask_structure(value) if key == "mask_structure" else None
    return structure.describe() if structure is not None else None


def _unset_block(item: NoSettings) -> str:
    lines = [f"{item.module}.{item.target} (no settings)", *(f"  {r}" for r in item.reasons)]
    return "\n".join(lines)


_NAMED = 8  # tensors named in the line about those no statement selects; the rest are counted


def _unselected_block(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    if len(names) > _NAMED:
        shown += f" and {len(names) - _NAMED} more"
    them = "it" if len(names) == 1 else f"these {len(names)}"
    return f"{shown} (no settings)\n  no statement selects {them}"
