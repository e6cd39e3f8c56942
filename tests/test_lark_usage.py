"""How the package uses Lark: its documented API only, and a grammar cache that never fails a parse."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import lark
import pytest

from dsl_compress.language.lark_parser import CACHE_DIR_VARIABLE, build_parser, cache_path
from dsl_compress.language.lark_parser import grammar_path
from dsl_compress.language.tree_builder import SyntaxBuilder

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "dsl_compress"

# Lark modules whose names are documented; from lark.lexer only Token (its TerminalDef and
# pattern classes are internals).
PUBLIC_MODULES = {"lark", "lark.exceptions", "lark.visitors", "lark.tree"}
PUBLIC_FROM_LEXER = {"Token"}
# Attributes that only Lark's internals have: reaching them means reading Lark's private state.
PRIVATE_ATTRIBUTES = {
    "parser_state",
    "parse_conf",
    "lexer_conf",
    "parse_table",
    "terminals_by_name",
}


def lark_uses(tree: ast.AST) -> list[str]:
    """Every use of Lark in a module that is not its public API, as 'line: what'."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}" for a in node.names if not _public(a.name, None)
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [
                f"{node.lineno}: from {node.module} import {a.name}"
                for a in node.names
                if not _public(node.module, a.name)
            ]
        elif isinstance(node, ast.Attribute):
            if node.attr in PRIVATE_ATTRIBUTES:
                found.append(f"{node.lineno}: .{node.attr}")
            elif isinstance(node.value, ast.Name) and node.value.id == "lark":
                if node.attr not in {*lark.__all__, "__version__", "exceptions"}:
                    found.append(f"{node.lineno}: lark.{node.attr}")
    return found


def _public(module: str, name: str | None) -> bool:
    if module != "lark" and not module.startswith("lark."):
        return True
    if module == "lark.lexer":
        return name in PUBLIC_FROM_LEXER
    return module in PUBLIC_MODULES


def test_no_module_of_the_package_reaches_into_lark():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        uses = lark_uses(ast.parse(path.read_text(encoding="utf-8")))
        if uses:
            found[str(path.relative_to(REPO))] = uses
    assert found == {}


def test_the_check_catches_private_lark_names():
    source = """
import lark.parsers.lalr_analysis
from lark.lexer import TerminalDef, Token
from lark.grammar import Rule
from lark import Lark, Token
from lark.exceptions import UnexpectedInput
states = parser.parser_state.parse_conf.parse_table.states
lark.lexer.BasicLexer
"""
    assert sorted(lark_uses(ast.parse(source))) == [
        "2: import lark.parsers.lalr_analysis",
        "3: from lark.lexer import TerminalDef",
        "4: from lark.grammar import Rule",
        "7: .parse_conf",
        "7: .parse_table",
        "7: .parser_state",
        "8: lark.lexer",
    ]


# ----- the grammar cache -------------------------------------------------------------------------

PROBE = """\
import json, logging, lark
from dsl_compress.language.parse import parse_rule_file
messages = []
handler = logging.Handler()
handler.emit = lambda record: messages.append(record.getMessage())
lark.logger.addHandler(handler)
lark.logger.setLevel(logging.DEBUG)
(statement,) = parse_rule_file("prune Conv2d.weight sparse_ratio=0.5").statements
print(json.dumps({"mode": statement.mode.value, "log": messages}))
"""


def run_probe(cache: Path) -> dict:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, CACHE_DIR_VARIABLE: str(cache), "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_fresh_process_reads_the_cache_the_first_one_wrote(tmp_path):
    cache = tmp_path / "cache"
    first = run_probe(cache)
    (written,) = cache.glob("*.lark-cache")
    assert first["mode"] == "prune"
    assert any(m.startswith("Saving grammar to cache") for m in first["log"])
    second = run_probe(cache)
    assert second["mode"] == "prune"
    assert any(m.startswith("Loading grammar from cache") for m in second["log"])
    assert not any(m.startswith("Saving grammar to cache") for m in second["log"])


def test_the_cache_file_is_named_by_grammar_and_lark_version(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(tmp_path))
    grammar = grammar_path().read_text(encoding="utf-8")
    path = cache_path(grammar)
    assert path is not None and path.parent == tmp_path
    assert cache_path(grammar + "\n// changed\n") != path
    monkeypatch.setattr(lark, "__version__", "0.0.0")
    assert cache_path(grammar) != path


def parses(parser: lark.Lark) -> bool:
    return len(parser.parse("prune Conv2d.weight sparse_ratio=0.5\n", start="start")) == 1


def test_a_cache_folder_that_cannot_be_made_means_no_cache(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = blocker / "cache"  # no folder can go there, whoever runs the test
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(cache))
    assert cache_path(grammar_path().read_text(encoding="utf-8")) is None
    assert run_probe(cache)["mode"] == "prune"


def test_a_read_only_cache_folder_still_parses(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        assert run_probe(cache)["mode"] == "prune"
    finally:
        cache.chmod(0o755)


@pytest.mark.parametrize("content", [b"", b"not a cache\n", b"0" * 64 + b"\n\x80\x04garbage"])
def test_a_broken_cache_file_is_rebuilt(monkeypatch, tmp_path, content: bytes):
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(tmp_path))
    path = cache_path(grammar_path().read_text(encoding="utf-8"))
    path.write_bytes(content)
    assert parses(build_parser(SyntaxBuilder(), lambda token: token))
    assert path.read_bytes() != content
    assert parses(build_parser(SyntaxBuilder(), lambda token: token))


def test_the_default_cache_folder_is_the_users(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_DIR_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = cache_path(grammar_path().read_text(encoding="utf-8"))
    assert path is not None and path.parent == tmp_path / "dsl-compress"
