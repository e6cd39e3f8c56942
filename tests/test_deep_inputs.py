"""Files from outside nested deeper than a reader's stack: every JSON, YAML, TOML and Python
literal reader turns them into its own diagnostic, never RecursionError (I901)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dsl_compress.diagnostics import CompressionError, Severity
from dsl_compress.io.staging import OWNER_FILE, clear_leftovers
from dsl_compress.schema.config_text import MAX_JSON_DEPTH, bounded_json
from cli_runner import run

PACKAGE = Path(__file__).resolve().parents[1] / "dsl_compress"
DEPTH = 100_000
DEEP_ARRAY = "[" * DEPTH + "]" * DEPTH
# Modules that may call json.loads themselves: the bounded reader and the config_list reader
# (both check the depth first), and the source folder's config.json, which transformers has
# read before.
RAW_JSON_READERS = {"schema/config_text.py", "io/ct_folder.py"}


def tiny() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 4))


def _rules(tmp_path: Path) -> Path:
    rules = tmp_path / "r.rules"
    rules.write_text("prune Linear.weight sparse_ratio=0.5\n")
    return rules


def _header_file(path: Path, header: str) -> Path:
    raw = header.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def _index_folder(tmp_path: Path, weight_map: str) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file(tiny().state_dict(), folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text('{"weight_map": ' + weight_map + "}")
    return folder


@pytest.mark.parametrize(
    "weights",
    [
        lambda tmp: _header_file(tmp / "w.safetensors", DEEP_ARRAY),
        lambda tmp: _header_file(tmp / "w.safetensors", '{"a": ' + DEEP_ARRAY + "}"),
        lambda tmp: _index_folder(tmp, DEEP_ARRAY),
        lambda tmp: _index_folder(tmp, "{" + '"a": {' * DEPTH + "}" * DEPTH + "}"),
    ],
    ids=["header array", "header entry", "index array", "index objects"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["in memory", "streamed"])
def test_deep_checkpoint_json_is_l102(tmp_path, capsys, weights, stream):
    args = ["apply", _rules(tmp_path), "--model", f"{__name__}:tiny", "--out", tmp_path / "o"]
    args += ["--weights", weights(tmp_path)] + (["--stream"] if stream else [])
    result = run(capsys, *args)
    assert result.code == 2 and "[L102]" in result.err
    assert f"deeper than {MAX_JSON_DEPTH} levels" in result.err
    assert "I901" not in result.err and not (tmp_path / "o").exists()


def test_deep_owner_record_is_a_folder_without_owner(tmp_path):
    staging = tmp_path / ".out.abcdefgh.tmp"
    (staging / "new").mkdir(parents=True)
    (staging / OWNER_FILE).write_text(DEEP_ARRAY)
    (notice,) = clear_leftovers(tmp_path / "out")
    assert notice.code == "L107" and notice.severity is Severity.WARNING
    assert "no owner record" in notice.message and staging.is_dir()


CONVERT_SOURCES = {
    "nni object": ("c.json", '{"prune": ' + DEEP_ARRAY + "}", []),
    "modelopt json": ("c.json", '{"quant_cfg": ' + DEEP_ARRAY + "}", []),
    "modelopt literal": ("c.py", "-" * DEPTH + "1", ["--from", "modelopt"]),
    "modelopt sum": ("c.py", "1" + "+1" * DEPTH, ["--from", "modelopt"]),
    "recipe flow": ("r.yaml", "a_stage:\n  b_modifiers:\n    M:\n      x: " + DEEP_ARRAY, []),
    "recipe block": (
        "r.yaml",
        "a_stage:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(3000)) + "  v: 1\n",
        [],
    ),
}


@pytest.mark.parametrize("name, text, extra", CONVERT_SOURCES.values(), ids=list(CONVERT_SOURCES))
def test_deep_convert_sources_are_diagnostics(tmp_path, capsys, name, text, extra):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    source = tmp_path / name
    source.write_text(text)
    out = tmp_path / "out.rules"
    result = run(capsys, "convert", source, *extra, "-o", out)
    assert result.code == 2 and re.search(r"\[K1(05|50)\]", result.err)
    assert "I901" not in result.err and not out.exists()


def test_deep_lsp_settings_are_l104(tmp_path):
    pytest.importorskip("pygls")
    from dsl_compress.lsp.project import find_manifest

    (tmp_path / "dsl-compress.toml").write_text("manifest = " + DEEP_ARRAY + "\n")
    with pytest.raises(CompressionError) as info:
        find_manifest(tmp_path)
    assert info.value.codes == ["L104"] and "too deeply" in str(info.value)


def test_bounded_json_reads_up_to_the_limit_and_says_where_it_stops():
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert bounded_json(at_limit) is not None
    with pytest.raises(ValueError, match=f"line 2 column {MAX_JSON_DEPTH + 1}"):
        bounded_json('{"a":\n [' + at_limit + "]}")
    assert bounded_json('{"k": "[[[[' + "[" * DEPTH + '"}') == {"k": "[[[[" + "[" * DEPTH}


def test_json_of_outside_files_is_read_through_the_bounded_reader():
    raw = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if re.search(r"\bjson\.loads?\(", path.read_text(encoding="utf-8"))
    ]
    assert set(raw) <= RAW_JSON_READERS, "read JSON with schema.config_text.bounded_json"
