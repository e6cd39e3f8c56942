"""The wheel ships the grammar, and the installed package parses with it outside the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GRAMMAR = REPO / "grammar" / "rules.lark"

# Run by the venv's python from a directory outside the repo, so only the wheel can answer.
PROBE = """\
import json, sys, sysconfig
from dsl_compress.language.parse import grammar_path, parse_rule_file
rule_file = parse_rule_file("prune Conv2d.weight sparse_ratio=0.5")
(statement,) = rule_file.statements
print(json.dumps({
    "grammar": str(grammar_path()),
    "purelib": sysconfig.get_paths()["purelib"],
    "prefix": sys.prefix,
    "mode": statement.mode.value,
    "selector": [s.text for s in statement.selector.path.segments],
    "settings": [[s.key, s.value.value] for s in statement.settings],
}))
"""


PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def dependency_folders() -> list[str]:
    """The folders the running interpreter imports the package's dependencies from."""
    import interegular
    import lark

    folders = {str(Path(module.__file__).resolve().parent.parent) for module in (lark, interegular)}
    return sorted(folders)


def run(command: list[str], cwd: Path) -> str:
    # No PYTHONPATH: the source tree must not leak into the installed package's imports.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_ships_the_grammar_and_parses_when_installed(tmp_path):
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-w", str(wheels)], REPO)
    (wheel,) = wheels.glob("dsl_compress-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "dsl_compress/grammar/rules.lark" in archive.namelist()
        assert archive.read("dsl_compress/grammar/rules.lark") == GRAMMAR.read_bytes()

    venv = tmp_path / "venv"
    # A venv of its own, with the caller's dependencies on its path through a .pth file: how
    # the caller installed them (system site-packages, a venv, --user) must not matter, and
    # --system-site-packages would expose the base interpreter's, not a calling venv's.
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], tmp_path)
    # After the install: with the caller's folders on its path, pip would take a copy of the
    # package installed there (CI installs one) as already satisfying the wheel.
    purelib = Path(run([str(python), "-c", PURELIB], tmp_path).strip())
    (purelib / "caller_dependencies.pth").write_text("\n".join(dependency_folders()) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = json.loads(run([str(python), "-c", PROBE], elsewhere))
    site_packages = Path(result["purelib"]).resolve()
    assert Path(result["prefix"]).resolve() == venv.resolve()
    assert site_packages.is_relative_to(venv.resolve())
    grammar = Path(result["grammar"])
    assert grammar == site_packages / "dsl_compress" / "grammar" / "rules.lark"
    assert grammar.read_bytes() == GRAMMAR.read_bytes()
    assert result["mode"] == "prune"
    assert result["selector"] == ["Conv2d", "weight"]
    assert result["settings"] == [["sparse_ratio", 0.5]]
