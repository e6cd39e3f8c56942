"""The one atomic writer: files and folders appear whole or not at all, with normal modes, and a
folder is never moved over anything it was not told to replace."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading

import pytest

from dsl_compress.diagnostics import CompressionError
from dsl_compress.io import atomic
from dsl_compress.io.atomic import publish_folder, rename_no_replace, write_text_atomically

RULES = "prune   Conv2d.weight   sparse_ratio=0.5\n"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def umask_set(value: int):
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def _tree(folder) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) and its text."""
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(params=["renameat2", "portable"])
def rename_kind(request, monkeypatch):
    """Both ways to refuse a replacement: Linux's renameat2, and the portable fallback."""
    if request.param == "portable":
        monkeypatch.setattr(atomic, "_renameat2", lambda: None)
    elif atomic._renameat2() is None:
        pytest.skip("renameat2 is not available here")
    return request.param


# ----- files: every file we rewrite keeps its mode and survives a full disk (item 10) -----------


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


def _rewriting_commands(tmp_path):
    """Each command that rewrites a file the user names: (argv, the file it rewrites)."""
    rules = tmp_path / "r.rules"
    rules.write_text(RULES)
    compiled, manifest = tmp_path / "compiled.json", tmp_path / "manifest.json"
    model = "dsl_compress.models:cnn"
    return {
        "fmt": (["fmt", rules], rules),
        "compile -o": (["compile", rules, "-o", compiled], compiled),
        "manifest -o": (["manifest", "--model", model, "-o", manifest], manifest),
    }


@pytest.mark.parametrize("command", ["fmt", "compile -o", "manifest -o"])
def test_every_rewritten_file_keeps_its_mode(tmp_path, capsys, command):
    from cli_runner import run

    argv, path = _rewriting_commands(tmp_path)[command]
    if not path.exists():
        path.write_text("old\n")
    path.chmod(0o640)
    assert run(capsys, *argv).code == 0
    assert path.read_text() not in ("old\n", RULES)  # it was rewritten
    assert _mode(path) == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("command", ["fmt", "compile -o", "manifest -o"])
def test_a_rewritten_symlink_stays_a_link_to_the_rewritten_file(tmp_path, capsys, command):
    from cli_runner import run

    argv, path = _rewriting_commands(tmp_path)[command]
    real = tmp_path / "real" / path.name
    real.parent.mkdir()
    real.write_text(path.read_text() if path.exists() else "old\n")
    path.unlink(missing_ok=True)
    path.symlink_to(real)
    assert run(capsys, *argv).code == 0
    assert path.is_symlink() and os.readlink(path) == str(real)
    assert real.read_text() not in ("old\n", RULES)
    assert sorted(p.name for p in real.parent.iterdir()) == [real.name]  # no temporary left


@pytest.mark.parametrize("command", ["fmt", "compile -o", "manifest -o"])
def test_every_rewritten_file_survives_a_full_disk(tmp_path, capsys, monkeypatch, command):
    from cli_runner import run

    argv, path = _rewriting_commands(tmp_path)[command]
    if not path.exists():
        path.write_text("old\n")
    before = path.read_text()
    real_fdopen = os.fdopen

    class FullDisk:
        """A file that takes the first 10 bytes, then reports a full disk (as fmt met it)."""

        def __init__(self, handle):
            self.handle = handle

        def write(self, text):
            self.handle.write(text[:10])
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(atomic.os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    result = run(capsys, *argv)
    assert result.code == 2
    assert "error[L105]" in result.err and "No space left on device" in result.err
    assert str(path) in result.err and "Traceback" not in result.err
    assert path.read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("command", ["compile -o", "manifest -o"])
def test_an_output_that_is_a_pipe_is_written_into_not_replaced(tmp_path, capsys, command):
    """-o /dev/stdout, /dev/null or a named pipe: a rename would put a file in its place."""
    from cli_runner import run

    argv, path = _rewriting_commands(tmp_path)[command]
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    received = []
    reader = threading.Thread(target=lambda: received.append(path.read_text()), daemon=True)
    reader.start()
    result = run(capsys, *argv)
    reader.join(timeout=60)
    assert result.code == 0 and stat.S_ISFIFO(os.lstat(path).st_mode)
    assert received and json.loads(received[0])  # the whole output came through the pipe
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["r.rules", path.name])


# ----- folders ------------------------------------------------------------------------------------


def _fill_one(folder):
    (folder / "a.txt").write_text("a")
    return ["a.txt"]


def test_a_folder_is_published_whole_and_overwrite_replaces_the_old_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert publish_folder(out, _fill_one, overwrite=True) == ["a.txt"]
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_missing_or_empty_folder_needs_no_overwrite(tmp_path, rename_kind):
    (tmp_path / "empty").mkdir()
    for name in ("empty", "missing"):
        publish_folder(tmp_path / name, _fill_one)
        assert _tree(tmp_path / name) == {"a.txt": "a"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "missing"]


def test_a_failing_fill_leaves_the_old_folder_and_no_staging(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def fill(folder):
        (folder / "half.txt").write_text("half")
        raise OSError(28, "No space left on device", str(folder / "half.txt"))

    with pytest.raises(CompressionError) as caught:
        publish_folder(out, fill, overwrite=True)
    diag = caught.value.diagnostics[0]
    assert diag.code == "L105"
    assert str(out / "half.txt") in diag.message  # named where it was going, not the staging
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# What may appear at the output path while a run fills its staging folder: each holds something.
def _a_full_folder(out):
    out.mkdir()
    (out / "theirs.txt").write_text("theirs")


def _a_file(out):
    out.write_text("theirs")


def _a_link_to_a_folder(out):
    elsewhere = out.with_name("elsewhere")
    elsewhere.mkdir()
    out.symlink_to(elsewhere, target_is_directory=True)


def _a_dangling_link(out):
    out.symlink_to(out.with_name("nowhere"))


APPEARING = [_a_full_folder, _a_file, _a_link_to_a_folder, _a_dangling_link]


def _snapshot(folder) -> dict[str, str]:
    """What is in ``folder``: names, link targets and file contents (staging excluded)."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            seen[key] = "-> " + os.readlink(path)
        elif path.is_file():
            seen[key] = path.read_text()
    return seen


@pytest.mark.parametrize("appear", APPEARING, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("existed", [False, True], ids=["was-missing", "was-empty"])
def test_what_appears_during_the_run_is_never_replaced(tmp_path, rename_kind, appear, existed):
    area, expected = tmp_path / "area", tmp_path / "expected"
    area.mkdir()
    expected.mkdir()
    appear(expected / "out")  # what the area must hold afterwards
    out = area / "out"
    if existed:
        out.mkdir()

    def fill(folder):
        (folder / "ours.txt").write_text("ours")
        if existed:
            out.rmdir()  # the empty folder is replaced by what another process puts there
        appear(out)
        return ["ours.txt"]

    with pytest.raises(CompressionError) as caught:
        publish_folder(out, fill)
    diag = caught.value.diagnostics[0]
    assert diag.code == "L105" and str(out) in diag.message
    assert "appeared during the run" in diag.message and "nothing was written" in diag.message
    assert _snapshot(area) == {
        name: seen.replace(str(expected), str(area)) for name, seen in _snapshot(expected).items()
    }
    assert not [p for p in area.iterdir() if p.name.startswith(".")]  # staging removed


def test_a_file_written_into_the_empty_output_folder_during_the_run_is_kept(tmp_path, rename_kind):
    out = tmp_path / "out"
    out.mkdir()

    def fill(folder):
        (folder / "ours.txt").write_text("ours")
        (out / "theirs.txt").write_text("theirs")
        return []

    with pytest.raises(CompressionError, match="appeared during the run"):
        publish_folder(out, fill)
    assert _tree(out) == {"theirs.txt": "theirs"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_of_two_runs_on_one_new_folder_the_second_to_finish_fails(tmp_path, rename_kind):
    out = tmp_path / "out"

    def first(folder):
        (folder / "first.txt").write_text("first")
        publish_folder(out, second)  # runs, and finishes, while the first is writing
        return []

    def second(folder):
        (folder / "second.txt").write_text("second")
        return []

    with pytest.raises(CompressionError, match="appeared during the run"):
        publish_folder(out, first)
    assert _tree(out) == {"second.txt": "second"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_of_two_overwriting_runs_the_last_to_finish_wins_and_nothing_is_left(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "before.txt").write_text("before")

    def first(folder):
        (folder / "first.txt").write_text("first")
        publish_folder(out, second, overwrite=True)
        return []

    def second(folder):
        (folder / "second.txt").write_text("second")
        return []

    publish_folder(out, first, overwrite=True)
    assert _tree(out) == {"first.txt": "first"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_overwrite_that_cannot_finish_says_where_the_old_output_is(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "before.txt").write_text("before")
    real_claim = atomic._claim

    def racing_claim(new, target):
        _a_full_folder(target)  # another process creates the folder between the two renames
        real_claim(new, target)

    monkeypatch.setattr(atomic, "_claim", racing_claim)
    with pytest.raises(CompressionError) as caught:
        publish_folder(out, _fill_one, overwrite=True)
    message = caught.value.diagnostics[0].message
    assert caught.value.codes == ["L105"] and "previous content is kept at" in message
    kept = message.split("kept at '")[1].rstrip("'")
    assert _tree(tmp_path / kept) == {"before.txt": "before"}
    assert _tree(out) == {"theirs.txt": "theirs"}


def test_rename_no_replace_refuses_every_kind_of_destination(tmp_path, rename_kind):
    for index, appear in enumerate(APPEARING):
        source = tmp_path / f"source{index}"
        source.mkdir()
        destination = tmp_path / f"case{index}" / "out"
        destination.parent.mkdir()
        appear(destination)
        with pytest.raises(FileExistsError):
            rename_no_replace(source, destination)
        assert source.is_dir()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileExistsError):
        rename_no_replace(tmp_path / "source0", empty)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_published_files_and_folders_get_the_umask_mode(tmp_path, umask):
    def fill(folder):
        private = folder / "private.bin"
        private.write_bytes(b"x")
        private.chmod(0o600)  # as safetensors writes its files
        (folder / "sub").mkdir(mode=0o700)
        (folder / "sub" / "plain.txt").write_text("y")
        return []

    with umask_set(umask):
        publish_folder(tmp_path / "out", fill)
    out = tmp_path / "out"
    assert _mode(out) == _mode(out / "sub") == 0o777 & ~umask
    assert _mode(out / "private.bin") == _mode(out / "sub" / "plain.txt") == 0o666 & ~umask
