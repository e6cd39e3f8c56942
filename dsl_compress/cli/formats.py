"""Lint results for people and machines (full, concise, json, sarif, github), and `explain CODE`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import dsl_compress
from dsl_compress.codes import CODES
from dsl_compress.diagnostics import Diagnostic, Severity, did_you_mean, fail
from dsl_compress.tools.lint import LintResult, file_of

FORMATS = ("full", "concise", "json", "sarif", "github")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/dsl-compress/"
SARIF_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
GITHUB_COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
NOUNS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "info message"}


def render(result: LintResult, fmt: str) -> str:
    """The lint result in ``fmt`` (one of FORMATS), without a trailing newline."""
    renderers: dict[str, Callable[[LintResult], str]] = {
        "full": _full,
        "concise": _concise,
        "json": _json,
        "sarif": _sarif,
        "github": _github,
    }
    if fmt not in renderers:
        hint = did_you_mean(str(fmt), FORMATS) or f"use one of {', '.join(FORMATS)}"
        fail("X803", f"unknown output format {fmt!r}", hint=hint)
    return renderers[fmt](result)


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


def _full(result: LintResult) -> str:
    blocks = [d.render(result.sources.get(file_of(d) or "")) for d in result.diagnostics]
    return "\n\n".join([*blocks, summary(result)]) if blocks else ""


def _concise(result: LintResult) -> str:
    return "\n".join(
        f"{d.location}: {d.severity.value}[{d.code}] {d.message}" for d in result.diagnostics
    )


# ----- for machines -------------------------------------------------------------------------------


def _json(result: LintResult) -> str:
    return json.dumps([_json_object(d) for d in result.diagnostics], indent=2)


def _json_object(diag: Diagnostic) -> dict[str, Any]:
    return {
        "code": diag.code,
        "name": CODES[diag.code].name,
        "severity": diag.severity.value,
        "message": diag.message,
        **position(diag),
        "hint": diag.hint,
    }


def _sarif(result: LintResult) -> str:
    codes = sorted({d.code for d in result.diagnostics})
    index = {code: i for i, code in enumerate(codes)}
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
        "results": [_sarif_result(d, index[d.code]) for d in result.diagnostics],
    }
    return json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2)


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
    return {
        "ruleId": diag.code,
        "ruleIndex": rule_index,
        "level": SARIF_LEVELS[diag.severity],
        "message": {"text": _with_hint(diag)},
        "locations": [{"physicalLocation": location}],
    }


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


# ----- explain CODE -------------------------------------------------------------------------------

# Where each family of codes comes from and what it stops: the "why" around a code's summary.
FAMILIES = {
    "E1": "a .rules syntax error: the file does not parse, so nothing is compiled",
    "E2": "a .rules meaning error: the file parses but cannot be compiled",
    "W3": "found with a model: the rules compile, but on this model they do less than they say"
    " (a warning) or fail when applied (an error)",
    "C1": "NNI config_list validation: the config_list is rejected before the model is touched",
    "S2": "module selection of a config_list, against the model's module names and types",
    "R3": "the registry of settings templates per module type",
    "T4": "a target checked against the model's tensors",
    "P5": "pruning: masks could not be computed as configured",
    "Q6": "quantization: scales could not be computed as configured",
    "D7": "distillation: the student and teacher cannot be compared as linked",
    "L1": "the command line could not load a model, weights, data or a manifest",
    "X8": "the compression lifecycle or an argument of the Python API",
}

# One example per code that a rules author meets, proven by the tests: (bundled model, rules).
EXAMPLES: dict[str, tuple[str | None, str]] = {
    "E101": (None, "prune conv1.weight sparse_ratio 0.5"),
    "E102": (None, "prune conv1.weight sparse_ratio=0.5 !"),
    "E103": (None, "prune conv1.weight sparse_ratio="),
    "E201": (None, "prune Conv2D.weight sparse_ratio=0.5"),
    "E202": (None, "prune Linear.weight sparse_ration=0.5"),
    "E203": (None, "prune Conv2d.weight sparse_ratio=0.5 metric=l3"),
    "E204": (None, "prune Conv2d.weight sparse_ratio=ratio"),
    "E205": (None, 'include "missing.rules"'),
    "E206": (None, '# in a.rules\ninclude "a.rules"'),
    "E207": (None, "prune Conv2d.weight sparse_ratio=50"),
    "E208": (
        "cnn",
        "align conv1.weight with conv2.weight dims=[0]\n"
        "align conv2.weight with conv1.weight dims=[0]",
    ),
    "E209": (
        "cnn",
        "prune conv1.weight sparse_ratio=0.5\nalign bn1.weight with conv9.weight dims=[0]",
    ),
    "E210": (None, 'prune re"(".weight sparse_ratio=0.5'),
    "E211": (None, "let ratio = 0.5\nlet ratio = 0.3"),
    "E212": (None, "register prune Empty { }"),
    "W301": ("cnn", "prune conv9.weight sparse_ratio=0.5"),
    "W302": (
        "cnn",
        "prune conv*.weight sparse_ratio=0.5\nprune {conv1,conv2}.weight sparse_ratio=0.3",
    ),
    "W303": ("resnet", "prune conv*.weight sparse_ratio=0.5\nprune conv1.weight sparse_ratio=0.3"),
    "W304": (
        "cnn",
        "prune conv1.weight sparse_ratio=0.5 metric=l2\nprune conv2.weight sparse_ratio=0.5",
    ),
    "W305": ("cnn", "prune conv1.weight sparse_ratio=0.1 granularity=out_channel"),
    "E213": (
        "cnn",
        "prune conv2.weight sparse_ratio=0.5 granularity=out_channel\n"
        "align bn1.weight with conv2.weight dims=[0]",
    ),
    "E214": ("cnn", "align bn1.weight with conv1.weight dims=[0]"),
    "R301": ("transformer", "prune attn sparse_ratio=0.5"),
}


def explain_code(code: str) -> str:
    """What a diagnostic code checks, why it matters, an example and the fix, from CODES."""
    key = code.strip().upper()
    if key not in CODES:
        fail("X803", f"unknown diagnostic code {code!r}", hint=_code_hint(code))
    info = CODES[key]
    sections = [f"{key} ({info.name})", _section("What it checks", info.summary)]
    family = FAMILIES.get(key[:2])
    if family:
        sections.append(_section("Why", f"This is {family}."))
    if key in EXAMPLES:
        model, text = EXAMPLES[key]
        note = f"# with --model dsl_compress.models:{model}\n" if model else ""
        sections.append(_section("Example", note + text))
    sections.append(_section("Fix", info.fix))
    return "\n\n".join(sections)


def _section(title: str, body: str) -> str:
    return f"{title}:\n" + "\n".join(f"    {line}" for line in body.split("\n"))


def _code_hint(word: str) -> str:
    """The closest codes, or the codes of a name ('matches-nothing' -> W301)."""
    named = [c for c, info in CODES.items() if info.name == word.strip().lower()]
    if named:
        return "did you mean " + " or ".join(repr(c) for c in named) + "?"
    return did_you_mean(word.strip().upper(), CODES) or "codes look like E201 or W301"
