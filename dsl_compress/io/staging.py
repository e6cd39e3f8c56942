"""Staging folders beside an output folder: the run folder a write owns, and the leftovers of
runs that were killed (removed when their owner is dead on this host, otherwise reported).

A run folder ``.<name>.XXXXXXXX.tmp`` holds ``owner.json`` (the pid and host of the run),
``new/`` (the output being written, moved to ``<name>`` when complete) and, while an existing
output is being replaced, ``old/`` (that output, set aside). What a killed run left is read
from which of these remain: ``old/`` without ``new/`` means the new output was moved in (``old/``
can go); both mean the run died between the two renames, so ``old/`` is the output and is put
back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dsl_compress.diagnostics import Diagnostic, Severity
from dsl_compress.schema.config_text import bounded_json

OWNER_FILE = "owner.json"
NEW = "new"
OLD = "old"
# tempfile.mkdtemp's random part: 8 of [a-z0-9_], never a dot, so 'a' never matches 'a.b''s.
_RANDOM = r"[a-z0-9_]{8}"


@dataclass(frozen=True)
class Owner:
    """The run that made a staging folder; ``started`` is when its process started (Linux)."""

    pid: int
    host: str
    started: int | None = None

    def is_dead(self) -> bool:
        """True only when the run surely ended: same host, and no process has its pid, or the
        one that has it started at another time (the pid was reused, as in a new container)."""
        if self.host != socket.gethostname():
            return False
        if not _alive(self.pid):
            return True
        now = start_time(self.pid)
        return None not in (now, self.started) and now != self.started


def make_run_folder(out: Path) -> Path:
    """A private folder beside ``out`` holding its owner record and an empty ``new/``, which
    gets the user's normal mode (it becomes ``out``)."""
    run = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        pid = os.getpid()
        owner = {
            "pid": pid,
            "host": socket.gethostname(),
            "started": start_time(pid),
            "out": str(out),
        }
        (run / OWNER_FILE).write_text(json.dumps(owner) + "\n", encoding="utf-8")
        (run / NEW).mkdir()
    except BaseException:
        shutil.rmtree(run, ignore_errors=True)
        raise
    return run


def clear_leftovers(out: Path) -> list[Diagnostic]:
    """Remove the staging folders that dead runs left beside ``out`` (putting back an output a
    killed run had set aside); one L107 note per folder, saying what was done or where it is."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.{_RANDOM}\.tmp(\.old)?")
    try:
        names = sorted(entry.name for entry in os.scandir(out.parent))
    except OSError:
        return []  # no parent yet: nothing was left
    found = []
    for name in names:
        folder = out.parent / name
        if pattern.fullmatch(name) and folder.is_dir() and not folder.is_symlink():
            found.append(_clear(folder, out))
    return found


def _clear(folder: Path, out: Path) -> Diagnostic:
    owner = read_owner(folder)
    if owner is None:
        return _left(folder, out, "has no owner record; it may hold an earlier run's output")
    if not owner.is_dead():
        where = f"pid {owner.pid}" + (
            "" if owner.host == socket.gethostname() else f" on {owner.host}"
        )
        return _left(folder, out, f"belongs to a run that may still be writing ({where})")
    try:
        return _recover(folder, out, owner)
    except OSError as exc:
        return _left(
            folder,
            out,
            f"was left by a killed run (pid {owner.pid}); removing it failed: {exc.strerror}",
        )


def _recover(folder: Path, out: Path, owner: Owner) -> Diagnostic:
    old, new = folder / OLD, folder / NEW
    if old.is_dir() and new.is_dir():
        if os.path.lexists(out):
            return _left(
                folder,
                out,
                f"was left by a run (pid {owner.pid}) that set aside the previous '{out.name}', "
                f"kept at '{old}'",
            )
        os.rename(old, out)  # the run died between setting the old output aside and moving in
        shutil.rmtree(folder)
        return _note(out, f"put back '{out}', which a killed run (pid {owner.pid}) had set aside")
    shutil.rmtree(folder)
    return _note(out, f"removed '{folder}', left by a killed run (pid {owner.pid})")


def read_owner(folder: Path) -> Owner | None:
    """The owner record of a staging folder; None when missing or not one of ours."""
    try:
        record = bounded_json((folder / OWNER_FILE).read_text(encoding="utf-8"))
        pid, host, started = record["pid"], record["host"], record.get("started")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if type(pid) is not int or pid <= 0 or not isinstance(host, str):
        return None  # pid 0 and negative pids name process groups: never probe them
    return Owner(pid, host, started if type(started) is int else None)


def start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (/proc); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rpartition(")")[2].split()[19])  # field 22; the name may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # without a safe probe (os.kill on Windows terminates), assume it runs
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # it exists but is not ours (EPERM), or the pid is not one we can ask about
    return True


def _left(folder: Path, out: Path, why: str) -> Diagnostic:
    return Diagnostic(
        "L107",
        Severity.WARNING,
        f"staging folder '{folder}' beside '{out.name}' {why}",
        subject=str(out),
        hint="remove it once no dsl-compress run writes there",
    )


def _note(out: Path, what: str) -> Diagnostic:
    return Diagnostic("L107", Severity.INFO, what, subject=str(out))
