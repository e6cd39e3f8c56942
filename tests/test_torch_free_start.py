"""Rules are parsed, formatted and linted without loading torch; a model loads it when needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import dsl_compress

REPO = Path(__file__).resolve().parent.parent

PROBE = """\
import json, sys
from dsl_compress.cli.main import main
status = main(sys.argv[1:])
print(json.dumps({"status": int(status), "torch": "torch" in sys.modules}))
"""


def _run(tmp_path: Path, *argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "r.rules"
    path.write_text("prune Conv2d.weight sparse_ratio=0.5\nprune fc.weight sparse_ratio=2\n")
    return path


@pytest.mark.parametrize(
    "argv, status",
    [
        (("lint", "--format", "json"), 1),  # the ratio 2 is a finding
        (("fmt", "--check"), 0),
        (("compile", "--format", "config-list"), 2),  # ... and an error when compiling
    ],
)
def test_commands_without_a_model_never_import_torch(tmp_path, rules, argv, status):
    assert _run(tmp_path, *argv, str(rules)) == {"status": status, "torch": False}


def test_explain_code_never_imports_torch(tmp_path):
    assert _run(tmp_path, "explain", "W301") == {"status": 0, "torch": False}


def test_a_model_loads_torch(tmp_path, rules):
    found = _run(tmp_path, "lint", str(rules), "--model", "dsl_compress.models:resnet")
    assert found["torch"] is True


def test_every_public_name_resolves():
    assert set(dsl_compress.__all__) == set(dsl_compress._EXPORTS)
    for name in dsl_compress.__all__:
        assert getattr(dsl_compress, name) is not None
    assert "prune" in dir(dsl_compress)
    with pytest.raises(AttributeError, match="no attribute 'prunne'"):
        dsl_compress.prunne
