"""Running the dsl-compress command in-process for tests: exit code, stdout, stderr."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from dsl_compress.cli.main import main


class Run(NamedTuple):
    code: int
    out: str
    err: str


def run(capsys, *argv) -> Run:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return Run(int(code), out, err)


def exit_of(capsys, *argv) -> tuple[int, str, str]:
    """--help, --version and usage errors leave through argparse's SystemExit."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def write(name: str, text: str) -> Path:
    """A file in the working folder, its text written as UTF-8."""
    path = Path(name)
    path.write_text(text, encoding="utf-8")
    return path
