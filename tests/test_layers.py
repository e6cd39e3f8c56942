"""The package's architecture as a test: each stage imports only the stages below it
(ARCHITECTURE.md draws the same picture), nothing below the command prints, and the
text stages never load torch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dsl_compress"

# Layer of each part of the package, lowest first. A module may import its own part and any
# part of a strictly lower layer; two parts of one layer never import each other.
LAYERS: dict[str, int] = {
    "diagnostics": 0,
    "codes": 0,
    "vocab": 0,
    "forward_signature": 0,
    "stand_in": 0,
    "language": 1,
    "schema": 1,
    "plan": 2,
    "resolve": 3,
    "engine": 3,
    "deploy": 3,
    "io": 4,
    "models": 4,
    "api": 5,
    "tools": 6,
    "lsp": 7,
    "cli": 8,
    "__init__": 9,
    "__main__": 9,
}
ROOT_SHARED = {"diagnostics", "codes", "vocab", "forward_signature", "stand_in"}  # may share
TORCH_FREE = ("language", "schema", "codes", "diagnostics", "vocab", "stand_in", "lsp")
TORCH_FREE_MODULES = {
    "io/atomic.py",
    "io/json_text.py",
    "io/staging.py",
    "cli/args.py",
    "cli/formats.py",
    "cli/gc_pause.py",
}
# What lint, compile and explain run on a manifest (the rest of that path imports torch lazily,
# only for a real torch module; tests/test_manifest_stand_in.py checks the whole path).
TORCH_FREE_MODULES |= {
    "io/manifest_read.py",
    "io/manifest_check.py",
    "resolve/model_index.py",
    "resolve/entries.py",
    "resolve/from_rules.py",
    "resolve/from_config.py",
    "engine/plan_checks.py",
    "engine/mask_checks.py",
    "engine/mask_request.py",
    "engine/quant_dtypes.py",
    "tools/lint.py",
    "tools/lint_pieces.py",
    "tools/text_diff.py",
    "deploy/ct_args.py",
    "deploy/ct_config.py",
    "deploy/ct_schemes.py",
    "deploy/vllm_checks.py",
    "deploy/findings.py",
    "deploy/model_shape.py",
    "deploy/checks.py",
    "tools/code_docs.py",
}


def _modules(root: Path = PACKAGE) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _part(relative: Path) -> str:
    """The part of the package a module belongs to: its subpackage, or its own name at the root."""
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported(tree: ast.AST) -> list[tuple[str, int]]:
    """Every module imported anywhere in the file (top level, lazily, under TYPE_CHECKING)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
            if node.module == "dsl_compress":
                found += [(f"dsl_compress.{a.name}", node.lineno) for a in node.names]
    return found


def _target_part(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "dsl_compress" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _violations(root: Path = PACKAGE) -> list[str]:
    found = []
    for path in _modules(root):
        relative = path.relative_to(root)
        part = _part(relative)
        for name, line in _imported(ast.parse(path.read_text(encoding="utf-8"))):
            target = _target_part(name)
            if target is None or target == part:
                continue
            lower = LAYERS[target] < LAYERS[part]
            shared_root = part in ROOT_SHARED and target in ROOT_SHARED
            if not (lower or shared_root):
                found.append(f"{relative}:{line}: {part} (layer {LAYERS[part]}) imports {name}")
    return found


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(path.relative_to(PACKAGE)) for path in _modules()}
    assert parts <= set(LAYERS) | {"grammar"}, parts - set(LAYERS)


def test_each_stage_imports_only_stages_below_it():
    assert _violations() == []


def test_the_layer_rule_catches_upward_and_sideways_imports(tmp_path):
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "lazy.py").write_text(
        "def f():\n    from dsl_compress.resolve.ruleset import RuleSet\n"
    )
    (tmp_path / "schema.py").write_text("import dsl_compress.plan\n")
    (tmp_path / "language.py").write_text("from dsl_compress import schema\n")
    (tmp_path / "cli.py").write_text("from dsl_compress.engine import masks\n")
    assert sorted(_violations(tmp_path)) == [
        "engine/lazy.py:2: engine (layer 3) imports dsl_compress.resolve.ruleset",
        "language.py:1: language (layer 1) imports dsl_compress.schema",
        "schema.py:1: schema (layer 1) imports dsl_compress.plan",
    ]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_below_the_command_prints(path):
    relative = path.relative_to(PACKAGE)
    if _part(relative) in ("cli", "__main__"):
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]
    streams = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in ("stdout", "stderr")
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ]
    assert calls == [] and streams == [], f"{relative} prints at lines {calls + streams}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_text_stages_never_import_torch(path):
    relative = path.relative_to(PACKAGE)
    if _part(relative) not in TORCH_FREE and str(relative) not in TORCH_FREE_MODULES:
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    runtime = [
        name
        for name, _ in _imported(_without_type_checking(tree))
        if name.split(".")[0] in ("torch", "numpy", "safetensors")
    ]
    assert runtime == [], f"{relative} imports {runtime}"


def _without_type_checking(tree: ast.Module) -> ast.Module:
    """The module minus its ``if TYPE_CHECKING:`` blocks (annotations only, never run)."""
    body = [
        node
        for node in tree.body
        if not (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        )
    ]
    return ast.Module(body=body, type_ignores=[])
