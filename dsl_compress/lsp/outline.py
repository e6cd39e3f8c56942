"""An open document's statements as far as they parse (a half-typed line hides none of the
others), and what stands at a position: the statement, and its selector, key or let name."""

from __future__ import annotations

from dataclasses import dataclass

from dsl_compress.language.parse import parse_partially
from dsl_compress.language.syntax import Align, Compress, Let, RuleFile, Selector, Setting
from dsl_compress.language.syntax import Register, Statement
from dsl_compress.lsp.positions import contains
from dsl_compress.vocab import Mode


@dataclass(frozen=True)
class Outline:
    """A document's parsed statements."""

    rule_file: RuleFile

    @classmethod
    def of(cls, text: str, path: str | None) -> "Outline":
        rule_file, _ = parse_partially(text, path)
        return cls(rule_file)

    @property
    def statements(self) -> tuple[Statement, ...]:
        return self.rule_file.statements

    def statement_at(self, line: int, column: int) -> Statement | None:
        return next((s for s in self.statements if contains(s.span, line, column)), None)

    def lets(self) -> dict[str, Let]:
        """The let statements by name (the first of a name: a second one is an error)."""
        found: dict[str, Let] = {}
        for stmt in self.statements:
            if isinstance(stmt, Let):
                found.setdefault(stmt.name, stmt)
        return found


def selectors_of(stmt: Statement) -> list[tuple[Selector, Mode | None]]:
    """Every selector a statement writes, with the kind it selects for (None: every kind)."""
    if isinstance(stmt, Compress):
        return [(s, stmt.mode) for s in (stmt.selector, *stmt.excepts)]
    if isinstance(stmt, Align):
        return [(s, Mode.PRUNE) for s in (stmt.selector, stmt.partner, *stmt.excepts)]
    selector = getattr(stmt, "selector", None)
    return [(selector, getattr(stmt, "mode", None))] if selector is not None else []


def settings_of(stmt: Statement) -> list[Setting]:
    """Every setting of a statement, a register's targets' included."""
    if isinstance(stmt, Register):
        return [setting for target in stmt.targets for setting in target.settings]
    return list(getattr(stmt, "settings", ()))


def mode_of(stmt: Statement) -> Mode | None:
    """The kind a statement's settings belong to: align statements are pruning's."""
    return Mode.PRUNE if isinstance(stmt, Align) else getattr(stmt, "mode", None)
