"""lint --fix and --diff: the findings' structured fixes applied to their files' texts, pass after
pass, re-linted after each, and the fixed files written atomically."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from dsl_compress.diagnostics import Diagnostic, Fix, SourceLines, Span, fail
from dsl_compress.io.atomic import write_text_atomically
from dsl_compress.language.includes import read_rules
from dsl_compress.tools.lint import LintResult
from dsl_compress.tools.text_diff import text_diff

# A fix may make others appear (a keyword fixed, the statement parses and its settings are
# checked) or be held back by an overlapping one: lint again, at most this many times.
MAX_PASSES = 10
BOM = "\ufeff"


@dataclass(frozen=True)
class FixedFile:
    """One file's text before and after its fixes (``name`` as diagnostics show it)."""

    name: str
    path: Path
    before: str
    after: str
    bom: bool = False

    def diff(self) -> str:
        """The unified diff of the fixes, as `lint --diff` prints it."""
        return text_diff(self.before, self.after, self.name, "fixed")

    def write(self) -> None:
        """Replace the file by its fixed text in one rename (a BOM it had is kept); a file no
        one may write (read-only) is refused, as an editor or ruff would (L105)."""
        if not self.path.stat().st_mode & 0o222:
            fail(
                "L105",
                f"'{self.name}' is read-only; its fixes were not written",
                subject=self.name,
                hint="make it writable (chmod u+w), or see the fixes with --diff",
            )
        write_text_atomically(self.path, (BOM if self.bom else "") + self.after)


@dataclass(frozen=True)
class FixOutcome:
    """What fixing did: the files it changed, how many fixes it applied, and the lint result
    of the fixed texts (what is left)."""

    files: tuple[FixedFile, ...]
    applied: int
    left: LintResult


Relint = Callable[[Mapping[Path, str]], LintResult]


def fix_findings(relint: Relint) -> FixOutcome:
    """Apply the fixes of ``relint({})``'s findings to their files' texts and lint again with
    the fixed texts in place of the files, until no fix is left (or MAX_PASSES); nothing is
    written (see :meth:`FixedFile.write`)."""
    originals: dict[Path, FixedFile] = {}
    texts: dict[Path, str] = {}
    applied = 0
    result = relint(texts)
    for _ in range(MAX_PASSES):
        made = 0
        for path, (name, fixes) in fixes_by_file(result.diagnostics).items():
            if path not in originals:
                originals[path] = _original(name, path)
            text, count = apply_fixes(texts.get(path, originals[path].before), fixes)
            texts[path] = text
            made += count
        if not made:
            break
        applied += made
        result = relint(texts)
    files = tuple(_fixed(originals[p], texts[p]) for p in originals)
    changed = tuple(f for f in files if f.after != f.before)
    return FixOutcome(changed, applied, _with_sources(result, changed))


def fixes_by_file(diagnostics: Iterable[Diagnostic]) -> dict[Path, tuple[str, list[Fix]]]:
    """Every fix of the diagnostics, grouped by the file it edits (by resolved path: one file
    named two ways, ``a.rules`` and ``./a.rules``, is edited once), with the name first
    shown."""
    found: dict[Path, tuple[str, list[Fix]]] = {}
    for diag in diagnostics:
        for fix in diag.fixes:
            if fix.span.file:
                path = Path(fix.span.file).resolve()
                found.setdefault(path, (fix.span.file, []))[1].append(fix)
    return found


def apply_fixes(text: str, fixes: Iterable[Fix]) -> tuple[str, int]:
    """``text`` with the fixes applied, and how many changed it. Fixes are taken in order of
    position; one overlapping a fix already taken waits for the next pass (its finding, if it
    is still there, brings it again); they are applied from the end backwards, so that each
    edit leaves the offsets of those before it as they were."""
    starts = _line_starts(text)
    chosen: list[tuple[int, int, str]] = []
    edits = {(*_offsets(fix.span, starts, len(text)), fix.replacement) for fix in fixes}
    replacements = Counter((start, end) for start, end, _ in edits)
    # Two findings wanting one place changed two ways (an included file read by two linted
    # files that define different lets): no certain fix, so none.
    edits = {edit for edit in edits if replacements[edit[:2]] == 1}
    for start, end, new in sorted(edits):
        overlaps = bool(chosen) and start < chosen[-1][1]
        if start >= 0 and not overlaps and text[start:end] != new:
            chosen.append((start, end, new))
    for start, end, new in reversed(chosen):
        text = text[:start] + new + text[end:]
    return text, len(chosen)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(i + 1 for i, char in enumerate(text) if char == "\n")
    return starts


def _offsets(span: Span, starts: list[int], size: int) -> tuple[int, int]:
    """A span's character offsets in the text (lines and columns from 1, end exclusive);
    (-1, -1) for a span outside it."""
    if not (0 < span.line <= span.end_line <= len(starts)):
        return -1, -1
    start = starts[span.line - 1] + span.column - 1
    end = starts[span.end_line - 1] + span.end_column - 1
    if not 0 <= start <= end <= size:
        return -1, -1
    return start, end


def _original(name: str, path: Path) -> FixedFile:
    """A file's text as lint read it (a BOM left out, and remembered)."""
    text = read_rules(path)
    bom = path.read_bytes().startswith(BOM.encode("utf-8"))
    return FixedFile(name, path, text, text, bom)


def _fixed(original: FixedFile, text: str) -> FixedFile:
    return FixedFile(original.name, original.path, original.before, text, original.bom)


def _with_sources(result: LintResult, files: Iterable[FixedFile]) -> LintResult:
    """The result shown with the fixed texts (for --diff, which writes none of them)."""
    known = {f.name: f.after.split("\n") for f in files}
    return LintResult(
        result.diagnostics, SourceLines(known), result.files_checked, result.unreadable
    )
