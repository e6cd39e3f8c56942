"""Golden files shared by every stage's tests: cases of a folder, comparison with a diff, regeneration.

Set DSL_COMPRESS_UPDATE_GOLDEN=1 to rewrite the expected files deliberately, then review the diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

UPDATE = os.environ.get("DSL_COMPRESS_UPDATE_GOLDEN") == "1"


def cases(folder: Path) -> list:
    """One pytest param per ``*.rules`` file of ``folder``, named after it."""
    return [pytest.param(source, id=source.stem) for source in sorted(folder.glob("*.rules"))]


def check(actual: str, expected_file: Path) -> None:
    """Compare with the golden file (a unified diff on failure), or rewrite it when updating."""
    if UPDATE:
        expected_file.write_text(actual, encoding="utf-8")
        return
    assert expected_file.is_file(), f"{expected_file} is missing: regenerate golden files"
    expected = expected_file.read_text(encoding="utf-8")
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=str(expected_file),
            tofile="actual",
        )
        pytest.fail(
            "output differs from the golden file (DSL_COMPRESS_UPDATE_GOLDEN=1 regenerates):\n"
            + "".join(diff),
            pytrace=False,
        )
