"""Lint results for people and machines: full, concise, json, sarif and github formats."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

import dsl_compress
from dsl_compress.codes import CODES
from dsl_compress.diagnostics import Diagnostic, Fix, Severity, did_you_mean, fail, render_all
from dsl_compress.tools.lint import LintResult, file_of

FORMATS = ("full", "concise", "json", "sarif", "github")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/dsl-compress/"
SARIF_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
GITHUB_COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
NOUNS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "info message"}


def render(result: LintResult, fmt: str) -> str:
    """The lint result in ``fmt`` (one of FORMATS), without a trailing newline."""
    return "".join(rendered_parts(result, fmt))


def rendered_parts(result: LintResult, fmt: str) -> Iterator[str]:
    """:func:`render`'s text in parts, to be written one after another: full, json and sarif
    give one part per diagnostic, so that 100,000 findings are never one document in memory."""
    renderers: dict[str, Callable[[LintResult], Iterable[str]]] = {
        "full": _full,
        "concise": lambda result: [_concise(result)],
        "json": _json,
        "sarif": _sarif,
        "github": lambda result: [_github(result)],
    }
    if fmt not in renderers:
        hint = did_you_mean(str(fmt), FORMATS) or f"use one of {', '.join(FORMATS)}"
        fail("X803", f"unknown output format {fmt!r}", hint=hint)
    return iter(renderers[fmt](result))


def position(diag: Diagnostic) -> dict[str, Any]:
    """File and 1-based span of a diagnostic; None where it has no place in the file."""
    span = diag.span
    return {
        "file": file_of(diag),
        "line": span.line if span else None,
        "column": span.column if span else None,
        "end_line": span.end_line if span else None,
        "end_column": span.end_column if span else None,
    }


def summary(result: LintResult) -> str:
    """'Found 2 errors, 1 warning.'; empty when nothing was found."""
    parts = []
    for severity, noun in NOUNS.items():
        count = result.count(severity)
        if count:
            parts.append(f"{count} {noun}{'' if count == 1 else 's'}")
    return f"Found {', '.join(parts)}." if parts else ""


# ----- for people ---------------------------------------------------------------------------------


# A finding `lint --fix` can fix is marked as ruff marks it.
FIXABLE_MARK = "[*]"


def _full(result: LintResult) -> Iterator[str]:
    """Each diagnostic's block, a blank line between two, then the summary; a part each."""
    rendered = render_all(result.diagnostics, result.sources)  # each file read once
    for i, (diag, block) in enumerate(zip(result.diagnostics, rendered)):
        yield ("\n\n" if i else "") + _marked(diag, block)
    if result.diagnostics:
        fixable = sum(1 for d in result.diagnostics if d.fixes)
        closing = f"{FIXABLE_MARK} {fixable} fixable with --fix." if fixable else ""
        yield "\n\n" + "\n".join(filter(None, [summary(result), closing]))


def _concise(result: LintResult) -> str:
    return "\n".join(_marked(d, f"{_header(d)}{d.message}") for d in result.diagnostics)


def _header(diag: Diagnostic) -> str:
    return f"{diag.location}: {diag.severity.value}[{diag.code}] "


def _marked(diag: Diagnostic, rendered: str) -> str:
    """A rendered diagnostic with the fixable mark after its code, when it has a fix."""
    head = _header(diag)
    if not diag.fixes or not rendered.startswith(head):
        return rendered
    return f"{head}{FIXABLE_MARK} {rendered[len(head):]}"


# ----- for machines -------------------------------------------------------------------------------


def _json(result: LintResult) -> Iterator[str]:
    """``json.dumps(objects, indent=2)`` of every diagnostic's object, one object at a time."""
    return _listed((_json_object(d) for d in result.diagnostics), "")


def _listed(items: Iterable[Any], indent: str) -> Iterator[str]:
    """A JSON list as ``json.dumps(..., indent=2)`` writes it where its brackets stand at
    ``indent`` (its items two spaces deeper), one item at a time."""
    inner = indent + "  "
    first = True
    for item in items:
        yield ("[\n" if first else ",\n") + inner + _indented(item, inner)
        first = False
    yield "[]" if first else "\n" + indent + "]"


def _indented(value: Any, indent: str) -> str:
    """``json.dumps(value, indent=2)`` at ``indent``. Written out here because json.dumps with
    an indent makes closures in a cycle on every call, which only the collector frees: the
    command pauses it, and 100,000 findings held 300 MB of them."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        fields = (
            f"{inner}{json.dumps(key)}: {_indented(item, inner)}" for key, item in value.items()
        )
        return "{\n" + ",\n".join(fields) + "\n" + indent + "}"
    if isinstance(value, list) and value:
        items = (inner + _indented(item, inner) for item in value)
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value)  # a scalar, {} or []: no indent, so json's C encoder


def _json_object(diag: Diagnostic) -> dict[str, Any]:
    return {
        "code": diag.code,
        "name": CODES[diag.code].name,
        "severity": diag.severity.value,
        "message": diag.message,
        **position(diag),
        "hint": diag.hint,
        "fixes": [_json_fix(fix) for fix in diag.fixes],
    }


def _json_fix(fix: Fix) -> dict[str, Any]:
    """One edit: replace the text from line:column to end_line:end_column (1-based, end
    exclusive, columns in characters) with ``replacement``."""
    span = fix.span
    return {
        "title": fix.title,
        "replacement": fix.replacement,
        "file": span.file,
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
    }


def _sarif(result: LintResult) -> Iterator[str]:
    """The SARIF log as ``json.dumps(sarif_log(codes, results), indent=2)`` writes it, its
    results one at a time."""
    codes = sorted({d.code for d in result.diagnostics})
    index = {code: i for i, code in enumerate(codes)}
    results = (_sarif_result(d, index[d.code]) for d in result.diagnostics)
    whole = json.dumps(sarif_log(codes, [_RESULTS_HERE]), indent=2)
    at = whole.index(f'"{_RESULTS_HERE}"')
    line_start = whole.rindex("\n", 0, at) + 1
    indent = whole[line_start:at][:-2]  # the list's own indent: its items stand 2 deeper
    head = whole[: line_start - 1].removesuffix("[")
    tail = whole[at + len(_RESULTS_HERE) + 2 :].removeprefix("\n" + indent + "]")
    return itertools.chain([head], _listed(results, indent), [tail])


# Stands for the results in the log's text while the rest is written (no rule text holds it).
_RESULTS_HERE = "dsl-compress: the results go here"


def sarif_log(codes: list[str], results: list[Any]) -> dict[str, Any]:
    """The SARIF 2.1.0 log of one run: the rules of ``codes`` and ``results``."""
    driver = {
        "name": "dsl-compress",
        "version": dsl_compress.__version__,
        "informationUri": INFORMATION_URI,
        "rules": [_sarif_rule(code) for code in codes],
    }
    run = {
        "tool": {"driver": driver},
        # Columns count characters of the decoded text, as Python indexes strings.
        "columnKind": "unicodeCodePoints",
        "results": results,
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def _sarif_rule(code: str) -> dict[str, Any]:
    info = CODES[code]
    return {
        "id": code,
        "name": info.name,
        "shortDescription": {"text": info.summary},
        "fullDescription": {"text": info.summary},
        "help": {"text": info.fix},
    }


def _sarif_result(diag: Diagnostic, rule_index: int) -> dict[str, Any]:
    where = position(diag)
    # A finding about a whole file (a missing file) is placed on its first line: GitHub code
    # scanning shows a result only where a region gives it a line.
    region: dict[str, int] = {"startLine": where["line"] or 1}
    if diag.span is not None:
        region.update(
            startColumn=where["column"], endLine=where["end_line"], endColumn=where["end_column"]
        )
    location = {"artifactLocation": {"uri": artifact_uri(where["file"] or "")}, "region": region}
    result = {
        "ruleId": diag.code,
        "ruleIndex": rule_index,
        "level": SARIF_LEVELS[diag.severity],
        "message": {"text": _with_hint(diag)},
        "locations": [{"physicalLocation": location}],
    }
    if diag.fixes:
        result["fixes"] = [_sarif_fix(fix) for fix in diag.fixes]
    return result


def _sarif_fix(fix: Fix) -> dict[str, Any]:
    """SARIF 2.1.0's fix object (§3.55): one artifact change of one replacement."""
    span = fix.span
    region = {
        "startLine": span.line,
        "startColumn": span.column,
        "endLine": span.end_line,
        "endColumn": span.end_column,
    }
    replacement = {"deletedRegion": region, "insertedContent": {"text": fix.replacement}}
    change = {
        "artifactLocation": {"uri": artifact_uri(span.file or "")},
        "replacements": [replacement],
    }
    return {"description": {"text": fix.title}, "artifactChanges": [change]}


def artifact_uri(file: str) -> str:
    """A relative URI with forward slashes (relative to the working folder when inside it)."""
    path = Path(file)
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            return path.as_uri()
    return quote(path.as_posix())


def _relative(file: str) -> str:
    """A path relative to the working folder when inside it (GitHub wants repository paths)."""
    path = Path(file)
    if path.is_absolute():
        try:
            return path.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return file
    return path.as_posix()


def _github(result: LintResult) -> str:
    return "\n".join(_workflow_command(d) for d in result.diagnostics)


def _workflow_command(diag: Diagnostic) -> str:
    """`::error file=F,line=L,...,title=CODE::message`, escaped as GitHub's toolkit does."""
    where = position(diag)
    props = [("file", _relative(where["file"] or ""))]
    if diag.span is not None:
        props += [("line", where["line"]), ("endLine", where["end_line"])]
        if where["line"] == where["end_line"]:  # GitHub reads columns on one-line spans only
            props += [("col", where["column"]), ("endColumn", where["end_column"])]
    props.append(("title", diag.code))
    text = ",".join(f"{key}={_escape_property(str(value))}" for key, value in props)
    return f"::{GITHUB_COMMANDS[diag.severity]} {text}::{_escape_data(_with_hint(diag))}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _with_hint(diag: Diagnostic) -> str:
    return f"{diag.message}\nhelp: {diag.hint}" if diag.hint else diag.message
