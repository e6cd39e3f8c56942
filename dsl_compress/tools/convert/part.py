"""What converting one piece of a source gives: statements, notes, and (with a model) what the
source tool gives each tensor, for the per-tensor check."""

from __future__ import annotations

from dataclasses import dataclass, field

from dsl_compress.diagnostics import Diagnostic, warning
from dsl_compress.tools.convert.conversion import ConvertedStatement
from dsl_compress.tools.convert.selection_check import TensorKey, Wanted


@dataclass(frozen=True)
class Part:
    """One modifier or config converted."""

    statements: tuple[ConvertedStatement, ...] = ()
    notes: tuple[Diagnostic, ...] = ()
    wanted: dict[TensorKey, Wanted] = field(default_factory=dict)
    # The modules whose whole quantization scheme a quantization modifier sets (selectors),
    # and whether it leaves some of them alone (an ignore list).
    replaces: tuple[str, ...] = ()
    ignores: bool = False


def note(code: str, origin: str, message: str, hint: str | None = None) -> Diagnostic:
    """A warning about the source, at the place it comes from (``recipe.yaml:12``): the
    subject, which the command prints before the message."""
    return warning(code, message, subject=origin or None, hint=hint)
