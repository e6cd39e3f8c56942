"""Leftovers of killed runs beside an output folder: those of dead runs on this host are
removed (an output they had set aside is put back); every other one is reported with its path."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dsl_compress.diagnostics import Severity
from dsl_compress.io.atomic import publish_folder
from dsl_compress.io.outputs import check_destination
from dsl_compress.io.staging import NEW, OLD, OWNER_FILE, clear_leftovers, start_time

ROOT = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    """A pid no process can have: above the kernel's largest."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    except OSError:
        return 2**31 - 1


def staging(out: Path, token: str, pid: int | None, host=None, *, parts=(NEW,), started=None):
    """A staging folder as a run with ``pid`` leaves it (no owner record when pid is None)."""
    folder = out.parent / f".{out.name}.{token}.tmp"
    folder.mkdir()
    if pid is not None:
        host = host or socket.gethostname()
        owner = {"pid": pid, "host": host, "started": started, "out": str(out)}
        (folder / OWNER_FILE).write_text(json.dumps(owner))
    for part in parts:
        (folder / part).mkdir()
        (folder / part / "model.safetensors").write_text(part)
    return folder


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    "parts", [(), (NEW,), (OLD,)], ids=["at-start", "while-writing", "after-moving-in"]
)
def test_the_staging_of_a_dead_run_is_removed(tmp_path, parts):
    out = tmp_path / "out"
    out.mkdir()
    folder = staging(out, "a1b2c3d4", dead_pid(), parts=parts)
    notes = clear_leftovers(out)
    assert names(tmp_path) == ["out"]
    assert [(d.code, d.severity) for d in notes] == [("L107", Severity.INFO)]
    assert str(folder) in notes[0].message and "killed run" in notes[0].message


def test_an_output_a_killed_swap_had_set_aside_is_put_back(tmp_path):
    out = tmp_path / "out"  # killed between moving the old output aside and the new one in
    staging(out, "a1b2c3d4", dead_pid(), parts=(NEW, OLD))
    notes = clear_leftovers(out)
    assert names(tmp_path) == ["out"] and (out / "model.safetensors").read_text() == OLD
    assert "put back" in notes[0].message and notes[0].severity is Severity.INFO


def test_a_set_aside_output_is_kept_when_something_took_its_place(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    folder = staging(out, "a1b2c3d4", dead_pid(), parts=(NEW, OLD))
    (notes,) = clear_leftovers(out)
    assert (folder / OLD / "model.safetensors").read_text() == OLD
    assert notes.severity is Severity.WARNING and str(folder / OLD) in notes.message


@pytest.mark.parametrize(
    "owner",
    ["running", "running-since-then", "other-host", "no-record", "bad-pid"],
)
def test_staging_that_may_be_in_use_is_reported_with_its_path_and_kept(tmp_path, owner):
    out = tmp_path / "out"
    pid, host, started = {
        "running": (os.getppid(), None, None),
        "running-since-then": (os.getppid(), None, start_time(os.getppid())),
        "other-host": (dead_pid(), "another-" + socket.gethostname(), None),
        "no-record": (None, None, None),
        "bad-pid": (-1, None, None),  # a negative pid names every process: never probed
    }[owner]
    folder = staging(out, "a1b2c3d4", pid, host, started=started)
    (note,) = clear_leftovers(out)
    assert note.code == "L107" and note.severity is Severity.WARNING
    assert str(folder) in note.message and note.hint
    assert (folder / NEW / "model.safetensors").read_text() == NEW


@pytest.mark.skipif(start_time(os.getpid()) is None, reason="needs /proc")
def test_a_pid_reused_by_a_later_process_counts_as_dead(tmp_path):
    """A new container (or a long uptime) gives the killed run's pid to another process."""
    out = tmp_path / "out"
    for pid in (os.getppid(), os.getpid()):
        staging(out, "a1b2c3d4", pid, started=start_time(pid) - 1)
        (note,) = clear_leftovers(out)
        assert note.severity is Severity.INFO and "removed" in note.message
        assert names(tmp_path) == []


def test_our_own_staging_is_never_removed(tmp_path):
    out = tmp_path / "out"
    folder = staging(out, "a1b2c3d4", os.getpid(), started=start_time(os.getpid()))
    (note,) = clear_leftovers(out)
    assert note.severity is Severity.WARNING and folder.is_dir()


def test_earlier_versions_set_aside_folders_are_reported(tmp_path):
    out = tmp_path / "out"
    old = tmp_path / ".out.zz_9yy8x.tmp.old"
    old.mkdir()
    (note,) = clear_leftovers(out)
    assert str(old) in note.message and old.is_dir()


def test_other_outputs_and_other_files_are_left_alone(tmp_path):
    out = tmp_path / "out"
    others = [
        staging(tmp_path / "out2", "a1b2c3d4", dead_pid()),
        staging(tmp_path / "out.v2", "a1b2c3d4", dead_pid()),
        tmp_path / ".out.notmkdtmp.tmp",
    ]
    others[-1].mkdir()
    (tmp_path / ".out.a1b2c3d4.tmp").write_text("a file, not ours")
    assert clear_leftovers(out) == []
    assert all(p.exists() for p in others)


def test_checking_the_destination_cleans_the_leftovers_of_dead_runs_first(tmp_path):
    out = tmp_path / "out"
    staging(out, "a1b2c3d4", dead_pid())
    staging(out, "e5f6g7h8", dead_pid(), parts=(NEW, OLD))
    notes = check_destination(out, overwrite=True)
    assert len(notes) == 2 and names(tmp_path) == ["out"]  # the set-aside output is back


KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from dsl_compress.io.atomic import publish_folder
from dsl_compress.io.outputs import check_destination

def fill(folder):
    (folder / "model.safetensors").write_bytes(b"x" * 1000)
    if sys.argv[2] == "while-writing":
        os.kill(os.getpid(), signal.SIGKILL)
    return []

def killed_swap(source, target):
    if source.name == "new":
        os.kill(os.getpid(), signal.SIGKILL)
    return real(source, target)

if sys.argv[2] == "while-swapping":
    import dsl_compress.io.atomic as atomic
    real = atomic.rename_no_replace
    atomic.rename_no_replace = killed_swap
publish_folder(Path(sys.argv[1]), fill, overwrite=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
@pytest.mark.parametrize("when", ["while-writing", "while-swapping"])
def test_a_run_killed_with_sigkill_is_cleaned_up_by_the_next(tmp_path, when):
    out = tmp_path / "out"
    out.mkdir()
    (out / "before.txt").write_text("before")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(out), when], env=env, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL
    assert len([n for n in names(tmp_path) if n.startswith(".out.")]) == 1  # its staging left
    if when == "while-swapping":
        assert not out.exists()  # killed with the old output set aside

    (note,) = check_destination(out, overwrite=True)  # what the next apply does first
    assert note.code == "L107" and names(out) == ["before.txt"]  # put back if set aside
    publish_folder(out, lambda folder: (folder / "after.txt").write_text("after"), overwrite=True)
    assert names(tmp_path) == ["out"] and names(out) == ["after.txt"]
