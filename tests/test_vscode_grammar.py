"""The VS Code extension (editors/vscode): its grammar's structure and manifest always, its
client under node, and the tokenizer test of every example file where npm installed it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "editors" / "vscode"
GRAMMAR = EXTENSION / "syntaxes" / "rules.tmLanguage.json"
LARK = ROOT / "grammar" / "rules.lark"
# A keyword terminal of the Lark grammar: `PRUNE: "prune"` (a priority like `.2` allowed).
KEYWORD_TERMINAL = re.compile(r'^[A-Z_]+(?:\.\d+)?\s*:\s*"([a-z]+)"\s*$', re.MULTILINE)
PATTERN_KEYS = ("match", "begin", "end")
NODE = shutil.which("node")


def lark_keywords() -> list[str]:
    return KEYWORD_TERMINAL.findall(LARK.read_text(encoding="utf-8"))


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def grammar_rules(node: object) -> Iterator[dict]:
    """Every rule of a TextMate grammar, nested ones and captures' patterns included."""
    if isinstance(node, dict):
        if any(key in node for key in PATTERN_KEYS + ("include", "patterns")):
            yield node
        for value in node.values():
            yield from grammar_rules(value)
    elif isinstance(node, list):
        for item in node:
            yield from grammar_rules(item)


def keyword_groups(rule: dict) -> Iterator[tuple[str, int]]:
    """(pattern, group) pairs whose text the rule scopes as a keyword (keyword.control.*)."""
    if rule.get("name", "").startswith("keyword.control.") and "match" in rule:
        yield rule["match"], 0
    for pattern_key, captures_key in (("match", "captures"), ("begin", "beginCaptures")):
        for group, capture in rule.get(captures_key, {}).items():
            if pattern_key in rule and capture.get("name", "").startswith("keyword.control."):
                yield rule[pattern_key], int(group)


def run_node(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NODE, script], cwd=EXTENSION, capture_output=True, text=True, timeout=300
    )


def test_grammar_is_json_whose_includes_all_resolve_and_whose_rules_are_all_used():
    grammar = load_json(GRAMMAR)
    assert grammar["scopeName"] == "source.rules"
    repository = grammar["repository"]
    included = {rule["include"][1:] for rule in grammar_rules(grammar) if "include" in rule}
    assert included - repository.keys() == set(), "includes of rules that do not exist"
    assert repository.keys() - included == set(), "rules that nothing includes"


def test_every_grammar_pattern_is_a_regular_expression():
    patterns = [
        rule[key]
        for rule in grammar_rules(load_json(GRAMMAR))
        for key in PATTERN_KEYS
        if key in rule
    ]
    assert len(patterns) > 20
    for pattern in patterns:
        re.compile(pattern)  # the grammar keeps to syntax Python and Oniguruma share


def test_every_keyword_of_the_lark_grammar_is_matched_by_a_keyword_pattern():
    keywords = lark_keywords()
    assert {"let", "include", "prune", "align", "with", "in"} <= set(keywords)
    groups = [group for rule in grammar_rules(load_json(GRAMMAR)) for group in keyword_groups(rule)]
    for keyword in keywords:
        scoped = {
            found.group(index)
            for pattern, index in groups
            if (found := re.search(pattern, keyword)) is not None
        }
        assert keyword in scoped, f"no keyword.control pattern of the grammar scopes {keyword!r}"


def test_package_json_contributes_the_language_grammar_settings_and_client():
    manifest = load_json(EXTENSION / "package.json")
    (language,) = manifest["contributes"]["languages"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert language["id"] == grammar["language"] == "dsl-rules"
    assert language["extensions"] == [".rules"]
    assert "onLanguage:dsl-rules" in manifest["activationEvents"]
    assert grammar["scopeName"] == load_json(EXTENSION / grammar["path"])["scopeName"]
    assert (EXTENSION / manifest["main"]).is_file()
    settings = manifest["contributes"]["configuration"]["properties"]
    assert settings["dslCompress.serverCommand"]["default"] == "dsl-compress"
    assert settings["dslCompress.serverArgs"]["default"] == ["lsp"]
    assert "vscode-languageclient" in manifest["dependencies"]
    assert {"vscode-textmate", "vscode-oniguruma"} <= manifest["devDependencies"].keys()
    configuration = load_json(EXTENSION / language["configuration"])
    assert configuration["comments"]["lineComment"] == "#"
    assert ["[", "]"] in configuration["brackets"] and ["{", "}"] in configuration["brackets"]


@pytest.mark.skipif(NODE is None, reason="needs node")
def test_extension_client_starts_the_configured_server_over_stdio():
    done = run_node("test/extension.test.js")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failures" in done.stdout


@pytest.mark.skipif(
    NODE is None or not (EXTENSION / "node_modules" / "vscode-textmate").is_dir(),
    reason="needs node and `npm install` in editors/vscode",
)
def test_grammar_tokenizes_every_example_file_with_vscode_textmate():
    done = run_node("test/grammar.test.js")
    assert done.returncode == 0, done.stdout + done.stderr
    examples = [p for folder in ("rules", "tests/data") for p in (ROOT / folder).rglob("*.rules")]
    assert f"{len(examples)} files" in done.stdout
