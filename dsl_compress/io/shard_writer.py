"""Safetensors files written tensor by tensor: the layout fixed up front from the planned tensors
(io/safetensors_layout.py), each tensor's bytes written straight to their place, in any order,
sharded the Hugging Face way past a size."""

from __future__ import annotations

import errno
import json
import os
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterable, Mapping, Sequence

import torch

from dsl_compress.diagnostics import fail
from dsl_compress.io.checkpoint import read_exactly
from dsl_compress.io.safetensors_layout import (
    PlannedTensor,
    check_plan,
    file_layout,
    shard_groups,
    shard_names,
)

__all__ = ["PlannedTensor", "ShardedWriter", "parse_shard_size", "write_safetensors"]

# Bytes handed to one write call: bounds what a device tensor copies to the CPU at a time.
CHUNK_BYTES = 16 * 2**20
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]*)\s*")
_SIZE_HINT = "write a byte count or a number with a unit: 5GB, 500MB (10^n bytes), 2GiB (2^n)"


def parse_shard_size(text: str) -> int:
    """'5GB' (10^9 bytes), '500MB', '2GiB' (2^30), '1000000' (bytes) → bytes; L105 otherwise."""
    found = _SIZE.fullmatch(text)
    unit = found[2].upper() if found else ""
    if found is None or unit not in _UNITS:
        fail("L105", f"--max-shard-size '{text}' is not a size", hint=_SIZE_HINT)
    try:
        size = int(Decimal(found[1]) * _UNITS[unit])
    except InvalidOperation:
        size = 0
    if size <= 0:
        fail("L105", f"--max-shard-size '{text}' is not a positive size", hint=_SIZE_HINT)
    return size


class ShardedWriter:
    """Writes planned tensors, in any order, into ``folder`` as ``<prefix>.safetensors`` or, past
    ``max_shard_size`` data bytes, as shards with ``<prefix>.safetensors.index.json``.

    Every file is created (with the user's normal mode) and given its header at once; each
    :meth:`write` puts one tensor's bytes at their offsets and keeps no reference to it.
    :meth:`close` checks that every planned tensor was written, syncs the files and writes the
    index. Failed writes raise OSError naming the file (a full disk: ENOSPC). As a context
    manager it closes on leaving; after an exception it only closes its handles (no index).

    Several processes may write one layout (a distributed run): each is given the whole plan
    and ``owns``, the names it writes; the one with ``create`` makes the files, writes their
    headers and the index, the others (made after it) open the files it made and write their
    tensors' bytes into them, so the files are the ones one process writes.
    """

    def __init__(
        self,
        folder: Path,
        prefix: str,
        tensors: Sequence[PlannedTensor],
        *,
        max_shard_size: int | None = None,
        metadata: Mapping[str, str] | None = None,
        owns: Callable[[str], bool] | None = None,
        create: bool = True,
    ) -> None:
        if max_shard_size is not None and max_shard_size <= 0:
            fail("X803", f"max_shard_size must be a positive byte count, not {max_shard_size}")
        check_plan(tensors, metadata)
        self._folder, self._prefix = Path(folder), prefix
        groups = shard_groups(tensors, max_shard_size)
        self.paths = [self._folder / name for name in shard_names(prefix, len(groups))]
        self._planned = {t.name: (t, index) for index, group in enumerate(groups) for t in group}
        self._starts: dict[str, int] = {}
        self._written: set[str] = set()
        self._owns, self._create = owns, create
        self._fds: list[int] = []
        self._closed = False
        try:
            for path, group in zip(self.paths, groups):
                layout = file_layout(group, metadata)
                self._starts |= layout.starts
                self._fds.append(_create(path) if create else _open_made(path))
                if create:
                    _write_at(self._fds[-1], memoryview(layout.header), 0, path)
        except BaseException:
            self._release()
            raise

    @property
    def planned(self) -> dict[str, PlannedTensor]:
        """Every tensor this writer's files hold, by name."""
        return {name: planned for name, (planned, _) in self._planned.items()}

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Write ``tensor`` as the planned ``name`` (X803 if unplanned, written, or off-plan)."""
        self._check_open()
        if name not in self._planned:
            fail("X803", f"'{name}' is not a planned tensor of {self._prefix}.safetensors")
        planned, index = self._planned[name]
        if name in self._written:
            fail("X803", f"tensor '{name}' of {self._prefix}.safetensors written twice")
        if (tuple(tensor.shape), tensor.dtype) != (planned.shape, planned.dtype):
            got = f"{tuple(tensor.shape)} {tensor.dtype}"
            fail("X803", f"tensor '{name}' is {got}, planned {planned.shape} {planned.dtype}")
        if tensor.is_meta:
            fail("X803", f"tensor '{name}' is on the meta device: it has no values to write")
        for offset, chunk in _byte_chunks(tensor):
            _write_at(self._fds[index], chunk, self._starts[name] + offset, self.paths[index])
        self._written.add(name)

    def read(self, name: str) -> torch.Tensor:
        """A planned tensor back from its file, once written (by this writer or, after a
        barrier, by another process writing the same layout)."""
        self._check_open()
        planned, index = self._planned[name]
        data = torch.empty(planned.nbytes, dtype=torch.uint8)
        path = self.paths[index]
        handle = os.open(path, os.O_RDONLY)
        try:
            read_exactly(handle, memoryview(data.numpy()), self._starts[name])
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        finally:
            os.close(handle)
        return data.view(planned.dtype).reshape(planned.shape)

    def close(self) -> list[Path]:
        """Check every planned tensor was written, sync the files, write the index when sharded;
        the files written (shards first, then the index)."""
        self._check_open()
        try:
            mine = [n for n in self._planned if self._owns is None or self._owns(n)]
            missing = [name for name in mine if name not in self._written]
            if missing:
                fail("X803", f"{self._prefix}.safetensors: {_listed(missing)} never written")
            for fd, path in zip(self._fds, self.paths):
                _sync(fd, path)
        finally:
            self._release()
        if len(self.paths) == 1 or not self._create:
            return list(self.paths)
        return [*self.paths, self._write_index()]

    def __enter__(self) -> ShardedWriter:
        return self

    def __exit__(
        self, kind: type | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is not None:
            self._release()
        elif not self._closed:
            self.close()

    def _write_index(self) -> Path:
        weight_map = {name: self.paths[index].name for name, (_, index) in self._planned.items()}
        total = sum(planned.nbytes for planned, _ in self._planned.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        path = self._folder / f"{self._prefix}.safetensors.index.json"
        fd = _create(path)
        try:
            _write_at(fd, memoryview(json.dumps(index, indent=2).encode("utf-8") + b"\n"), 0, path)
            _sync(fd, path)
        finally:
            os.close(fd)
        return path

    def _check_open(self) -> None:
        if self._closed:
            fail("X803", f"the writer of {self._prefix}.safetensors is closed")

    def _release(self) -> None:
        self._closed = True
        while self._fds:
            os.close(self._fds.pop())


def write_safetensors(
    folder: Path,
    prefix: str,
    tensors: Mapping[str, torch.Tensor],
    *,
    max_shard_size: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write ``tensors`` (held by the caller) through a :class:`ShardedWriter`; the files."""
    planned = [PlannedTensor.of(name, tensor) for name, tensor in tensors.items()]
    with ShardedWriter(
        folder, prefix, planned, max_shard_size=max_shard_size, metadata=metadata
    ) as writer:
        for name, tensor in tensors.items():
            writer.write(name, tensor)
        return writer.close()


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"tensor(s) {', '.join(names[:5])}{more} were"


def _byte_chunks(tensor: torch.Tensor) -> Iterable[tuple[int, memoryview]]:
    """The tensor's bytes as (offset, bytes) of at most CHUNK_BYTES each: views of a CPU
    tensor's own memory, so writing copies nothing (a strided or device tensor is made
    contiguous first, and a device tensor reaches the CPU a chunk at a time)."""
    data = tensor.detach()
    if data.numel() == 0:
        return
    flat = data.contiguous().reshape(-1).view(torch.uint8)
    for start in range(0, flat.numel(), CHUNK_BYTES):
        part = flat[start : start + CHUNK_BYTES].cpu()
        yield start, memoryview(part.numpy())


def _create(path: Path) -> int:
    """A new file for writing; its mode is what the umask gives a new file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        return os.open(path, flags, 0o666)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _open_made(path: Path) -> int:
    """A file another process of the run made, for writing into."""
    try:
        return os.open(path, os.O_WRONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _write_at(fd: int, data: memoryview, offset: int, path: Path) -> None:
    """All of ``data`` at ``offset``, looping on short writes; an OSError names ``path``."""
    try:
        while data:
            count = _pwrite(fd, data, offset)
            if count == 0:
                raise OSError(errno.EIO, "the system wrote nothing")
            data, offset = data[count:], offset + count
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def _pwrite(fd: int, data: memoryview, offset: int) -> int:
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows has no pwrite; each handle has one writer
    return os.write(fd, data)


def _sync(fd: int, path: Path) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
