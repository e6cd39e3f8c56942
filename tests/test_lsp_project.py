"""The language server's project: the manifest found by convention (or --manifest) turning on
the model-aware checks, hover and completion from it; includes read from open buffers, their
findings published for the included file, an edit of one re-checking its includers; and the
command without pygls."""

from __future__ import annotations

import asyncio

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls")

from dsl_compress.lsp.project import find_manifest  # noqa: E402
from dsl_compress.tools.lint import lint  # noqa: E402
from dsl_compress.io.manifest_read import load_manifest, stand_in_model  # noqa: E402
from tests.lsp_session import REPO, run_session  # noqa: E402

RULES = """\
prune Conv2d.weight sparse_ratio=0.5
prune nothing_here.weight sparse_ratio=0.5
prune layer1.0.conv1.weight sparse_ratio=0.3
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("manifest") / "manifest.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dsl_compress",
            "manifest",
            "--model",
            "dsl_compress.models:resnet",
            "-o",
            str(path),
        ],
        check=True,
        cwd=REPO,
    )
    return path


def _project(tmp_path: Path, manifest: Path, settings: str = "dsl-compress.toml") -> Path:
    (tmp_path / "manifest.json").write_bytes(manifest.read_bytes())
    table = "" if settings == "dsl-compress.toml" else "[tool.dsl-compress]\n"
    (tmp_path / settings).write_text(f'{table}manifest = "manifest.json"\n', encoding="utf-8")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.rules").write_text(RULES, encoding="utf-8")
    return tmp_path / "rules" / "a.rules"


def _conv_weights(manifest: Path) -> list[str]:
    modules = json.loads(manifest.read_text())["modules"]
    return [f"{m['name']}.weight" for m in modules if m["type"] == "Conv2d"]


def test_find_manifest_searches_upwards_for_either_settings_file(tmp_path, manifest):
    rules = _project(tmp_path, manifest, "pyproject.toml")
    assert find_manifest(rules.parent) == tmp_path / "manifest.json"
    (rules.parent / "dsl-compress.toml").write_text('manifest = "m2.json"\n')
    assert find_manifest(rules.parent) == rules.parent / "m2.json"
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (rules.parent / "dsl-compress.toml").unlink()
    assert (
        find_manifest(rules.parent) is None
        or find_manifest(rules.parent) != tmp_path / "manifest.json"
    )


@pytest.mark.parametrize("settings", ["dsl-compress.toml", "pyproject.toml"])
def test_a_manifest_by_convention_turns_on_the_model_aware_checks(tmp_path, manifest, settings):
    rules = _project(tmp_path, manifest, settings)

    async def body(session):
        return await session.diagnostics(session.open(rules))

    found = run_session(tmp_path, body)
    model = stand_in_model(load_manifest(tmp_path / "manifest.json"))
    expected = {(d.code, d.span.line - 1) for d in lint([str(rules)], model).diagnostics}
    assert {(d.code, d.range.start.line) for d in found} == expected
    assert ("W301", 1) in expected  # nothing_here matches nothing: known only with the model


def test_without_a_manifest_the_model_aware_checks_stay_off(tmp_path):
    (tmp_path / "a.rules").write_text(RULES, encoding="utf-8")

    async def body(session):
        return await session.diagnostics(session.open(tmp_path / "a.rules"))

    assert "W301" not in {d.code for d in run_session(tmp_path, body)}


def test_the_manifest_option_hover_and_completion_from_the_model(tmp_path, manifest):
    (tmp_path / "a.rules").write_text(RULES, encoding="utf-8")
    text = RULES + "prune layer1.0.\n"
    last = len(text.split("\n")) - 2

    async def body(session):
        uri = session.open(tmp_path / "a.rules")
        found = await session.diagnostics(uri)
        hover = await session.hover(uri, 0, 8)
        session.change(uri, text)
        segments = await session.completion(uri, last, len("prune layer1.0."))
        top = await session.completion(uri, last, len("prune "))
        return found, hover, segments, top

    found, hover, segments, top = run_session(tmp_path, body, "--manifest", str(manifest))
    assert "W301" in {d.code for d in found}
    conv_weights = _conv_weights(manifest)
    assert f"matches {len(conv_weights)} tensors" in hover
    assert f"`{conv_weights[0]}`" in hover
    assert {"conv1", "bn1", "conv2", "shortcut"} <= set(segments)
    assert "layer1" not in segments
    assert {"conv1", "layer1", "fc", "Conv2d", "BasicBlock"} <= set(top)


def test_findings_in_an_included_file_are_published_for_it(tmp_path):
    (tmp_path / "base.rules").write_text("prune Linear.weight sparse_ratio=2\n")
    (tmp_path / "a.rules").write_text('include "base.rules"\n')
    base_uri = (tmp_path / "base.rules").resolve().as_uri()

    async def body(session):
        uri = session.open(tmp_path / "a.rules")
        return await session.diagnostics(uri), await session.diagnostics(base_uri)

    own, included = run_session(tmp_path, body)
    assert own == []
    expected = {(d.code, d.span.line - 1) for d in lint([str(tmp_path / "base.rules")]).diagnostics}
    assert {(d.code, d.range.start.line) for d in included} == expected != set()


def test_an_unsaved_edit_of_an_included_file_rechecks_its_includer(tmp_path):
    (tmp_path / "base.rules").write_text("let ratio = 0.5\n")
    (tmp_path / "a.rules").write_text(
        'include "base.rules"\nprune Linear.weight sparse_ratio=ratio\n'
    )

    async def body(session):
        uri = session.open(tmp_path / "a.rules")
        before = await session.diagnostics(uri)
        base = session.open(tmp_path / "base.rules")
        await session.diagnostics(base)
        session.change(base, "let rate = 0.5\n")  # never saved: the includer reads the buffer
        after = await session.diagnostics(uri, lambda found: bool(found))
        session.close(base)  # back to the file on disk
        again = await session.diagnostics(uri, lambda found: not found)
        return before, after, again

    before, after, again = run_session(tmp_path, body)
    assert before == [] and again == []
    assert any(d.range.start.line == 1 and "ratio" in d.message for d in after)


def test_a_missing_include_is_checked_again_once_its_file_is_opened(tmp_path):
    (tmp_path / "a.rules").write_text('include "later.rules"\nprune Linear.weight sparse_ratio=r\n')

    async def body(session):
        uri = session.open(tmp_path / "a.rules")
        before = await session.diagnostics(uri, lambda found: bool(found))
        (tmp_path / "later.rules").write_text("let r = 0.5\n")
        session.open(tmp_path / "later.rules")
        after = await session.diagnostics(uri, lambda found: not found)
        return before, after

    before, after = run_session(tmp_path, body)
    assert {d.code for d in before} >= {"E205"} and after == []


def test_an_included_files_findings_go_to_the_uri_it_is_open_under(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "base.rules").write_text("prune Linear.weight sparse_ratio=2\n")
    (real / "a.rules").write_text('include "base.rules"\n')
    (tmp_path / "link").symlink_to(real)

    async def body(session):
        base = session.open(tmp_path / "link" / "base.rules", resolve=False)
        await session.diagnostics(base, lambda found: bool(found))
        includer = session.open(tmp_path / "link" / "a.rules", resolve=False)
        await session.diagnostics(includer)
        await asyncio.sleep(0.5)  # the includer's findings for base.rules are published after
        elsewhere = session.published.get((real / "base.rules").resolve().as_uri(), [])
        return base, await session.diagnostics(base, lambda found: bool(found)), elsewhere

    base, found, elsewhere = run_session(tmp_path, body)
    assert "/link/" in base and found
    assert all(not params.diagnostics for params in elsewhere)  # not under a second URI
    assert {d.code for d in found} == {d.code for d in lint([str(real / "base.rules")]).diagnostics}


def test_the_command_without_pygls_says_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['pygls'] = None\n"
        "from dsl_compress.cli.main import main\n"
        "sys.exit(main(['lsp']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dsl-compress lsp needs pygls: pip install 'dsl-compress[lsp]'"
    ]


def test_the_server_checks_against_a_manifest_without_loading_torch(tmp_path, manifest):
    rules = _project(tmp_path, manifest)
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from dsl_compress.lsp.diagnostics import check_document\n"
        "from dsl_compress.lsp.project import Project\n"
        "path = Path(sys.argv[1])\n"
        "found = check_document(path.as_uri(), path.read_text(), {}, Project())\n"
        "codes = {d.code for ds in found.by_uri.values() for d in ds}\n"
        "print('W301' in codes, 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(rules)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split() == ["True", "False"], done.stderr
