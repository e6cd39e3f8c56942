"""The one atomic writer: files and folders appear whole or not at all, with normal modes."""

from __future__ import annotations

import os
import stat

import pytest

from dsl_compress.diagnostics import CompressionError
from dsl_compress.io.atomic import publish_folder, write_text_atomically


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_new_file_gets_the_umask_mode_and_an_existing_one_keeps_its_mode(tmp_path):
    new = tmp_path / "new.txt"
    write_text_atomically(new, "a\n")
    assert new.read_text() == "a\n" and _mode(new) == 0o666 & ~_umask()
    kept = tmp_path / "kept.rules"
    kept.write_text("old\n")
    kept.chmod(0o600)
    write_text_atomically(kept, "new\n")
    assert kept.read_text() == "new\n" and _mode(kept) == 0o600


def test_a_failed_file_write_keeps_the_old_content_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "r.rules"
    path.write_text("keep me\n")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CompressionError) as caught:
        write_text_atomically(path, "x" * 1000)
    diag = caught.value.diagnostics[0]
    assert diag.code == "L105" and "No space left on device" in diag.message
    assert ".tmp" not in diag.message  # the temporary's name means nothing to the user
    assert path.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.rules"]


def _existing_folder(parent, file_name: str):
    out = parent / "out"
    out.mkdir()
    (out / file_name).write_text("old")
    return out


def test_a_folder_is_published_whole_and_replaces_the_old_one(tmp_path):
    out = _existing_folder(tmp_path, "stale.txt")

    def fill(folder):
        (folder / "a.txt").write_text("a")
        return ["a.txt"]

    assert publish_folder(out, fill) == ["a.txt"]
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failing_fill_leaves_the_old_folder_and_no_staging(tmp_path):
    out = _existing_folder(tmp_path, "old.txt")

    def fill(folder):
        (folder / "half.txt").write_text("half")
        raise OSError(28, "No space left on device", str(folder / "half.txt"))

    with pytest.raises(CompressionError) as caught:
        publish_folder(out, fill)
    assert caught.value.diagnostics[0].code == "L105"
    assert "half.txt" in caught.value.diagnostics[0].message
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_fmt_rewrites_through_the_atomic_writer_keeping_the_mode(tmp_path, capsys):
    from cli_runner import run

    path = tmp_path / "r.rules"
    path.write_text("prune   Conv2d.weight   sparse_ratio=0.5\n")
    path.chmod(0o640)
    assert run(capsys, "fmt", path).code == 0
    assert path.read_text() == "prune Conv2d.weight sparse_ratio=0.5\n"
    assert _mode(path) == 0o640
