"""Which statements speak to which tensor: shared lists for type-wide statements, per-tensor lists
for the rest, and the tensors in the order the statements first reached them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from dsl_compress.vocab import Mode
from dsl_compress.resolve.check import Rule, SettingValue

SettingKey = tuple[Mode, str, str]
HasTarget = Callable[[str, str], bool]


@dataclass(frozen=True, eq=False)
class Contribution:
    """What one statement says about the tensors it matches (one per statement, or per align
    partner): shared by every tensor it reaches, compared by identity."""

    rule: Rule
    values: dict[str, SettingValue]
    explicit: bool

    @property
    def rank(self) -> tuple[tuple[int, int], int]:
        return (self.rule.selector.specificity, self.rule.index)


# A tensor with its shared (type-wide) and its own contributions.
TensorContributions = tuple[SettingKey, tuple[Contribution, ...], list[Contribution]]


def in_statement_order(shared: tuple[Contribution, ...], own: list) -> list[Contribution]:
    """A tensor's contributions in statement order (type groups keep their own order)."""
    return sorted([*shared, *own], key=lambda c: c.rule.index)


@dataclass
class _TypeGroup:
    """The type-wide statements of one (kind, type), over the modules none of them may skip."""

    modules: list[str]
    # target -> statements naming it (kept only where the module has it) / reaching it through
    # the template (kept everywhere)
    explicit: dict[str, list[Contribution]] = field(default_factory=dict)
    implicit: dict[str, list[Contribution]] = field(default_factory=dict)
    # (statement index, target) -> the target's position among the statement's targets
    positions: dict[tuple[int, str], int] = field(default_factory=dict)

    def shared(self, target: str) -> tuple[tuple[Contribution, ...], tuple[Contribution, ...]]:
        """The lists for modules without and with the target's parameter (made once)."""
        implicit = tuple(self.implicit.get(target, ()))
        explicit = tuple(self.explicit.get(target, ()))
        return implicit, (implicit + explicit if explicit else implicit)


class ContributionTable:
    """Contributions per (kind, module, target), built statement by statement.

    A statement that selects every module of a type (no name, scope, except or align) joins its
    type's group once instead of being appended to tens of thousands of tensors: a large model's
    type statements cost one entry each, and tensors with equal lists share one tuple.
    """

    def __init__(self, has_parameter: HasTarget, everywhere: HasTarget) -> None:
        """``has_parameter(module, target)``: whether a module has the target;
        ``everywhere(type_name, target)``: whether every module of the type has it."""
        self._has_parameter = has_parameter
        self._everywhere = everywhere
        self._own: dict[SettingKey, list[Contribution]] = {}
        self._own_first: dict[SettingKey, tuple[int, int]] = {}
        self._groups: dict[tuple[Mode, str], _TypeGroup] = {}
        self._shared: dict[tuple, Contribution] = {}
        self._seq = 0

    def contribution(self, rule: Rule, values: dict[str, SettingValue], explicit: bool, *tag: str):
        """The one Contribution of ``rule`` (and ``tag``, the align partner), made on first use."""
        key = (rule.index, *tag)
        if key not in self._shared:
            self._shared[key] = Contribution(rule, values, explicit)
        return self._shared[key]

    def add_all(self, contribution: Contribution, keys: list[SettingKey]) -> None:
        """One statement's contribution to each of ``keys``, in order."""
        own, first, index = self._own, self._own_first, contribution.rule.index
        for key in keys:
            found = own.get(key)
            if found is None:
                own[key] = [contribution]
                first[key] = (index, self._seq)
                self._seq += 1
            else:
                found.append(contribution)

    def add_type_wide(
        self, type_key: tuple[Mode, str], modules: list[str], c: Contribution, targets, explicit
    ) -> None:
        """A statement reaching ``targets`` of every module in ``modules`` (all of one type)."""
        group = self._groups.setdefault(type_key, _TypeGroup(modules))
        side = group.explicit if explicit else group.implicit
        for position, target in enumerate(targets):
            side.setdefault(target, []).append(c)
            group.positions[(c.rule.index, target)] = position

    def items(self) -> list[TensorContributions]:
        """Every tensor with its shared (type-wide) and own contributions, in the order the
        statements first reached them (as if each statement had been added tensor by tensor)."""
        shared: dict[SettingKey, tuple[Contribution, ...]] = {}
        first = {key: index * _SPAN + seq for key, (index, seq) in self._own_first.items()}
        for (mode, type_name), group in self._groups.items():
            for key, found, order in self._group_keys(mode, type_name, group):
                shared[key] = found
                first[key] = min(first[key], order) if key in first else order
        keys = sorted(first, key=first.__getitem__)
        return [(key, shared.get(key, ()), self._own.get(key, [])) for key in keys]

    def _group_keys(self, mode: Mode, type_name: str, group: _TypeGroup) -> list[tuple]:
        """(key, contributions, order) for every module and target of a type's group."""
        out = []
        for target in (*group.implicit, *group.explicit.keys() - group.implicit.keys()):
            without, with_target = group.shared(target)
            per_module = with_target is not without and not self._everywhere(type_name, target)
            firsts = {id(f): _earliest(f) for f in (without, with_target)}
            for position, module in enumerate(group.modules):
                found = with_target
                if per_module and not self._has_parameter(module, target):
                    found = without
                if found:
                    first = firsts[id(found)]
                    order = first * _SPAN + position * _TARGETS + group.positions[(first, target)]
                    out.append(((mode, module, target), found, order))
        return out


# Orders are one int: statement index, then the tensor's rank among that statement's tensors.
_TARGETS = 1 << 12
_SPAN = 1 << 48


def _earliest(found: tuple[Contribution, ...]) -> int:
    return min((c.rule.index for c in found), default=-1)
