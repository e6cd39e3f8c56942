"""Writing files and folders atomically: the one place that stages output and moves it into place.

A file is written to a temporary file beside it and renamed over it (a device or pipe, such as
``/dev/stdout``, is written into instead: a rename would replace it); a folder is filled in a
staging folder beside it and renamed into place. Readers see the old content or the new,
never a part; on any failure the staging is removed and the destination is as it was. Every
failure to write is one L105 diagnostic naming the path and the reason.

A folder is never moved over anything it was not told to replace: the final rename is
``renameat2(RENAME_NOREPLACE)`` on Linux, and elsewhere a rename that cannot replace a
non-empty folder or a file (only an empty folder, which loses nothing). A symlinked output
folder stays a link: the folder it points to is the one written (staged beside it, on its
file system). Written files and folders get the user's normal mode (the umask).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from dsl_compress.diagnostics import CompressionError, error
from dsl_compress.io.staging import NEW, OLD, make_run_folder

T = TypeVar("T")
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
# A rename refused because the destination is there: an entry, or a folder that is not empty.
_OCCUPIED = (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR)


def write_text_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one rename, keeping an existing file's mode;
    a new file gets the user's normal mode (the umask). A symlink stays a link: the file it
    points to is the one replaced. A device, pipe or socket (``/dev/stdout``, ``/dev/null``) is
    written into, never replaced by a file."""
    path = Path(path)
    if _is_stream(path):
        _write_into(path, text)
        return
    target = published_path(path)
    mode = _mode_of(target)
    temp = None
    try:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, target)
    except OSError as exc:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
        raise write_error(path, OSError(exc.errno, exc.strerror)) from None  # not the temp's name


def _is_stream(path: Path) -> bool:
    """True for an existing path that is neither a file nor a folder (links followed, so
    ``/dev/stdout`` is the pipe or terminal it stands for)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _write_into(path: Path, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    except OSError as exc:
        raise write_error(path, OSError(exc.errno, exc.strerror)) from None


def published_path(out: Path) -> Path:
    """The folder a write to ``out`` replaces: ``out`` itself, or the folder a link points to."""
    return Path(os.path.realpath(out))


def publish_folder(out: Path, fill: Callable[[Path], T], *, overwrite: bool = False) -> T:
    """Call ``fill(staging)`` on a fresh folder beside ``out``, then move it to ``out``.

    Without ``overwrite`` only a missing or empty ``out`` is replaced: one that appeared or
    filled up meanwhile is L105, and nothing is written. With it, an existing ``out`` is set
    aside and replaced as a whole, and put back if the move fails. Runs of this function in
    one folder take turns for the swap (a lock on the parent folder).
    """
    target = published_path(out)
    run = _make_run(target, out)
    try:
        result = fill(run / NEW)
        _give_normal_modes(run / NEW)
        _move_into_place(run, target, out, overwrite)
    except OSError as exc:
        _discard(run)
        raise write_error(out, named_for_user(exc, run / NEW, out)) from None
    except BaseException:
        _discard(run)
        raise
    shutil.rmtree(run, ignore_errors=True)
    return result


def write_error(path: Path, exc: OSError) -> CompressionError:
    """L105 for a failed write: the path, the system's reason and the file it concerned."""
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    return CompressionError(
        [
            error(
                "L105",
                f"cannot write '{path}': {reason}{where}; nothing was written",
                subject=str(path),
            )
        ]
    )


def rename_no_replace(source: Path, destination: Path) -> None:
    """Rename ``source`` to ``destination`` only if nothing is there (FileExistsError if so)."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        flags = ctypes.c_uint(_RENAME_NOREPLACE)
        if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(destination), flags):
            code = ctypes.get_errno()
            if code not in (errno.ENOSYS, errno.EINVAL):  # no kernel or file system support
                raise OSError(code, os.strerror(code), str(destination))
        else:
            return
    if os.path.lexists(destination):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(destination))
    # Between the check and the rename only an empty folder can be replaced: rename(2) refuses
    # to move a folder over a non-empty folder or a file, and Windows refuses any destination.
    os.rename(source, destination)


@functools.cache
def _renameat2() -> Callable | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None  # a C library older than glibc 2.28, or none we can load
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


def _make_run(target: Path, out: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return make_run_folder(target)
    except OSError as exc:
        raise write_error(out, exc) from None


def _move_into_place(run: Path, target: Path, out: Path, overwrite: bool) -> None:
    """Swap the staging folder in; an existing folder is set aside, and put back on failure."""
    new, old = run / NEW, run / OLD
    with _swap_lock(target.parent):
        if overwrite and target.is_dir() and not target.is_symlink():
            os.rename(target, old)
        try:
            _claim(new, target)
        except OSError as exc:
            if old.is_dir():
                _put_back(old, target, out)
            if exc.errno in _OCCUPIED:
                raise _appeared(out) from None
            raise


def _claim(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an empty folder there may be replaced, nothing else."""
    try:
        rename_no_replace(new, target)
    except FileExistsError:
        if not target.is_dir() or target.is_symlink():
            raise
        os.rename(new, target)  # rename(2) replaces a folder only while it is empty


def _put_back(old: Path, target: Path, out: Path) -> None:
    try:
        rename_no_replace(old, target)
    except OSError:
        message = (
            f"output folder '{out}' appeared during the run while it was being replaced; the "
            f"new output was not moved in, and the previous content is kept at '{old}'"
        )
        raise CompressionError([error("L105", message, subject=str(out))]) from None


def _appeared(out: Path) -> CompressionError:
    message = (
        f"output folder '{out}' appeared during the run (or was filled); it was not replaced, "
        "nothing was written and the staging folder was removed"
    )
    hint = "choose a new folder, or allow overwriting it"
    return CompressionError([error("L105", message, subject=str(out), hint=hint)])


@contextlib.contextmanager
def _swap_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` for the swap, best effort: where there is none (Windows,
    some network file systems) the no-replace rename still refuses to lose anything."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        handle = None  # a folder we may write but not read: no lock
    try:
        if handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        if handle is not None:
            os.close(handle)  # closing releases the lock


def _discard(run: Path) -> None:
    """Remove a failed run's staging, unless it holds an output that could not be put back."""
    if (run / OLD).is_dir():
        return
    shutil.rmtree(run, ignore_errors=True)


def named_for_user(exc: OSError, staging: Path, out: Path) -> OSError:
    """The error with a file in the staging folder named as it would be in ``out``."""
    name = exc.filename
    if isinstance(name, str) and Path(name).is_relative_to(staging):
        name = str(out / Path(name).relative_to(staging))
    return OSError(exc.errno, exc.strerror or str(exc), name)


def _give_normal_modes(folder: Path) -> None:
    """What a writer made private (safetensors writes 0600) gets the umask's mode."""
    umask = _umask()
    for root, folders, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):  # chmod would change what a link points to
                os.chmod(path, 0o666 & ~umask)


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
