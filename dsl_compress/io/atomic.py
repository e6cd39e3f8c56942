"""Writing files and folders atomically: the one place that stages output and moves it into place.

A file is written to a temporary file beside it and renamed over it; a folder is filled in a
temporary folder beside it and renamed into place. Readers see the old content or the new,
never a part; on any failure the staging is removed and the destination is as it was. Every
failure to write is one L105 diagnostic naming the path and the reason.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from dsl_compress.diagnostics import CompressionError, error

T = TypeVar("T")


def write_text_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one rename, keeping an existing file's mode;
    a new file gets the user's normal mode (the umask)."""
    path = Path(path)
    mode = _mode_of(path)
    temp = None
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as exc:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
        raise write_error(path, OSError(exc.errno, exc.strerror)) from None  # not the temp's name


def publish_folder(out: Path, fill: Callable[[Path], T]) -> T:
    """Call ``fill(staging)`` on a fresh folder beside ``out``, then move it to ``out``.

    An existing ``out`` is set aside and replaced as a whole (the caller decides whether that
    is allowed), and put back if the move fails. ``out`` may be a symlink: it is replaced
    by the new folder and the folder it pointed to is left alone.
    """
    staging = _make_staging(out)
    try:
        result = fill(staging)
        _move_into_place(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise write_error(out, exc) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def write_error(path: Path, exc: OSError) -> CompressionError:
    """L105 for a failed write: the path, the system's reason and the file it concerned."""
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    return CompressionError(
        [error("L105", f"cannot write '{path}': {reason}{where}", subject=str(path))]
    )


def _mode_of(path: Path) -> int:
    """An existing file's permission bits, else what a new file gets under the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _make_staging(out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the results are not
        return staging
    except OSError as exc:
        raise write_error(out, exc) from None


def _move_into_place(staging: Path, out: Path) -> None:
    """Swap the staging folder in; an existing folder is set aside and put back on failure."""
    if not out.exists() and not out.is_symlink():
        os.rename(staging, out)
        return
    old = staging.with_name(staging.name + ".old")
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        raise
    if old.is_symlink():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)
