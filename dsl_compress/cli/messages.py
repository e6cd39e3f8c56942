"""What the command prints besides its results: diagnostics and warnings on stderr (coloured on a
terminal), the exit statuses, and which process of a torchrun job speaks for it."""

from __future__ import annotations

import enum
import os
import re
import sys

from dsl_compress.diagnostics import render_all


class ExitStatus(enum.IntEnum):
    """0 clean, 1 findings, 2 usage or input error."""

    OK = 0
    FINDINGS = 1
    ERROR = 2


def print_diagnostics(diagnostics) -> None:
    """Each diagnostic on stderr, located ones with their source excerpt (each file read once)."""
    for diag, text in zip(diagnostics, render_all(diagnostics)):
        print(paint(text if diag.span is not None else _one_line(diag)), file=sys.stderr)


def _one_line(diag) -> str:
    """A failure with no source position (a file, a spec) is one line: what, where, the fix."""
    hint = f" ({diag.hint})" if diag.hint else ""
    where = f"{diag.subject}: " if diag.subject else ""
    return f"{where}{diag.severity.value}[{diag.code}] {diag.message}{hint}"


def paint(text: str, stream=None) -> str:
    """Colour severities when ``stream`` (stderr by default) is a terminal and NO_COLOR is unset."""
    stream = stream or sys.stderr
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return text
    colours = {"error": "31", "warning": "33", "info": "36"}
    return re.sub(
        r"\b(error|warning|info)\[", lambda m: f"\033[1;{colours[m[1]]}m{m[1]}\033[0m[", text
    )


def report_warnings(diagnostics) -> None:
    """Warnings and notes of a compile, on stderr (stdout may carry JSON); a torchrun job's
    rank 0 reports them for all."""
    if follower():
        return
    print_diagnostics([diag for diag in diagnostics if diag.severity.value != "error"])


def torchrun_job() -> bool:
    """Whether torchrun (or a launcher setting its variables) started several processes."""
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")


def follower() -> bool:
    """A process of a torchrun job other than rank 0 (torchrun numbers them in RANK): it
    leaves the output folder, the summary and the warnings to rank 0."""
    return torchrun_job() and os.environ.get("RANK", "0") != "0"
