"""A reader that stops reading (`dsl-compress lint ... | head`) is not an internal error: the
command stops quietly with exit 2, whichever of its streams the reader closed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Enough findings to outgrow any pipe buffer, written a diagnostic at a time.
BAD_LINES = "".join(f"prune m{i}.weight badkey=1\n" for i in range(3000))
MODEL = "dsl_compress.models:cnn"


def _command(tmp_path: Path, text: str, *argv: str) -> list[str]:
    rules = tmp_path / "r.rules"
    rules.write_text(text)
    return [
        sys.executable,
        "-m",
        "dsl_compress",
        *[str(rules) if a == "RULES" else a for a in argv],
    ]


def _read_a_little_then_close(command: list[str], stream: str, log: Path) -> int:
    """Run ``command`` with ``stream`` piped to a reader that takes 10 bytes and leaves; the
    other stream goes to ``log``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("wb") as other:
        pipes = {"stdout": other, "stderr": other, stream: subprocess.PIPE}
        process = subprocess.Popen(command, env=env, **pipes)
        getattr(process, stream).read(10)
        getattr(process, stream).close()
        return process.wait(timeout=300)


@pytest.mark.parametrize("output", ["full", "json", "sarif", "github"])
def test_a_closed_stdout_ends_the_command_quietly(tmp_path, output):
    command = _command(tmp_path, BAD_LINES, "lint", "RULES", "--format", output)
    log = tmp_path / "stderr.txt"
    assert _read_a_little_then_close(command, "stdout", log) == 2
    said = log.read_text()
    assert "I901" not in said and "Traceback" not in said and "Exception ignored" not in said


def test_a_closed_stderr_ends_the_command_with_exit_2(tmp_path):
    command = _command(tmp_path, BAD_LINES, "apply", "RULES", "--model", MODEL, "--dry-run")
    # Before, the diagnostic printer's BrokenPipeError escaped main: a traceback and exit 1.
    assert _read_a_little_then_close(command, "stderr", tmp_path / "stdout.txt") == 2
