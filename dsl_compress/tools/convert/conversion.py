"""What a converter produces, whatever the source tool: statements in .rules terms with the source
place each came from, a comment where the source's meaning was surprising, and the notes
(warnings and what was not converted) as diagnostics; rendered as formatted .rules text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from dsl_compress.diagnostics import Diagnostic
from dsl_compress.language.format import format_rules
from dsl_compress.vocab import Mode

_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ConvertedStatement:
    """One .rules statement: ``mode`` (None for ``exclude``), the selector as .rules spells it
    (``Linear.weight``, ``re"model\\.layers\\.\\d+\\.mlp\\..*"``), its settings in the language's
    spelling, the source place it came from (``recipe.yaml:12``, ``config_list[3]``) and a
    comment line or two saying what was surprising about it (None: nothing)."""

    mode: Mode | None
    selector: str
    settings: tuple[tuple[str, Any], ...] = ()
    origin: str = ""
    comment: str | None = None
    # For ``exclude``: the mode it is limited to (``exclude X from quantize``); None: all.
    exclude_from: Mode | None = None
    # Selectors of an ``except`` clause: modules this statement alone skips.
    excepts: tuple[str, ...] = ()
    # For an ``align`` statement (mode prune): the selector of the tensor it follows.
    align_with: str | None = None


@dataclass(frozen=True)
class Conversion:
    """A converted source: its statements in order (our precedence must give the source's
    result), and every note about it (each a Diagnostic with its code and place)."""

    statements: tuple[ConvertedStatement, ...]
    notes: tuple[Diagnostic, ...] = ()
    source: str = ""
    header: tuple[str, ...] = field(default_factory=tuple)

    def rules_text(self) -> str:
        """The statements as formatted .rules text, each preceded by its comment and origin."""
        lines = [f"# {line}" for line in self.header]
        for statement in self.statements:
            lines.extend(_statement_lines(statement))
        return format_rules("\n".join(lines) + "\n", self.source or None)


def _statement_lines(statement: ConvertedStatement) -> list[str]:
    lines = [f"# {line}" for line in (statement.comment or "").splitlines()]
    if statement.origin:
        lines.append(f"# from {statement.origin}")
    if statement.mode is None:
        limited = f" from {statement.exclude_from.value}" if statement.exclude_from else ""
        return lines + [f"exclude {statement.selector}{limited};"]
    settings = "".join(f" {key}={value_text(value)}" for key, value in statement.settings)
    excepts = f" except {', '.join(statement.excepts)}" if statement.excepts else ""
    if statement.align_with is not None:
        head = f"align {statement.selector} with {statement.align_with}"
    else:
        head = f"{statement.mode.value} {statement.selector}"
    return lines + [f"{head}{settings}{excepts};"]


def value_text(value: Any) -> str:
    """A setting value as .rules writes it: bare words and numbers as they are, other strings
    quoted, lists in brackets, None as ``none``, booleans as ``true``/``false``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    text = str(value)
    return text if _BARE_WORD.match(text) else json.dumps(text)


# A converter: the source text, its path, the mode for a plain NNI list, and the model (a
# torch module or a manifest's stand-in; None without one) to check the selection against.
Converter = Callable[[str, str, "Mode | None", Any], Conversion]
