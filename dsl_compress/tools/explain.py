"""explain: for each tensor, the statements that matched it, which one won each key and why."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import torch

from dsl_compress.vocab import Mode
from dsl_compress.resolve.ruleset import RuleSet
from dsl_compress.resolve.selectors import EXACT, PATTERN, TYPE
from dsl_compress.schema.key_sets import nni_key

_LEVELS = {EXACT: "exact name", PATTERN: "name pattern", TYPE: "type"}


@dataclass(frozen=True)
class Candidate:
    """One statement's value for one key of one tensor."""

    value: Any
    origin: str
    specificity: str


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


def explain(ruleset: RuleSet, model: torch.nn.Module, target: str | None = None) -> list:
    """Explanations for every planned tensor whose `module.target` matches the glob ``target``,
    read from the compiled plan and the statements that reached each tensor."""
    compiled = ruleset.compile(model, trace=True)
    out = []
    for entry in compiled.plan.entries:
        name = f"{entry.module}.{entry.target}"
        if target is not None and not fnmatch.fnmatchcase(name, target):
            continue
        found = compiled.contributions.get((entry.mode, entry.module, entry.target), [])
        statements = tuple(dict.fromkeys(str(c.rule.span) for c in found))
        decisions = tuple(d for d in (_decide(k, found, entry) for k in _keys(found)) if d)
        setting = {k: v for k, v in entry.setting.items() if v is not None}
        out.append(
            TensorExplanation(
                entry.module, entry.target, entry.mode, statements, decisions, setting, entry.metric
            )
        )
    return out


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
    return Candidate(value.value, str(value.span), label)


def _reason(winner, setters) -> str:
    rivals = [c for c in setters if c is not winner]
    if not rivals:
        return "the only statement that sets it"
    level = winner.rule.selector.specificity
    if all(c.rule.selector.specificity < level for c in rivals):
        return "more specific than every other statement that sets it"
    return "the latest of the most specific statements that set it"


def render_explanations(explanations: list[TensorExplanation]) -> str:
    """Plain text, one block per tensor."""
    blocks = []
    for item in explanations:
        lines = [f"{item.module}.{item.target} ({item.mode.value})"]
        lines.append("  matched by: " + (", ".join(item.statements) or "-"))
        for d in item.decisions:
            lines.append(f"  {d.key} = {d.winner.value!r} from {d.winner.origin} ({d.reason})")
            for other in d.others:
                lines.append(f"      not {other.value!r} from {other.origin} ({other.specificity})")
        final = ", ".join(f"{k}={v!r}" for k, v in item.setting.items())
        lines.append(f"  final: {final}" + (f", metric={item.metric}" if item.metric else ""))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")
