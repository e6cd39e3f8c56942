"""Checkpoints as users have them: one .safetensors file, a sharded index, or a folder of either,
read lazily (headers up front, each tensor read into memory of its own when asked for)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from dsl_compress.diagnostics import fail
from dsl_compress.io.safetensors_header import FileHeader, TensorInfo, read_header
from dsl_compress.io.specs import listing
from dsl_compress.schema.config_text import bounded_json

__all__ = ["Checkpoint", "TensorInfo", "is_checkpoint", "open_checkpoint"]

INDEX_SUFFIX = ".safetensors.index.json"
# The Hugging Face names a folder's checkpoint goes by, in the order they are preferred.
PREFERRED = ("model.safetensors.index.json", "model.safetensors")
# dsl-compress's own outputs beside a model in an output folder: never the weights to load.
OUTPUT_PREFIXES = ("masks", "quant")


class Checkpoint:
    """Tensors by name from one file or the shards an index names; only headers are read up
    front, and each shard is opened the first time one of its tensors is read.

    A tensor is read into memory of its own, not memory-mapped: a mapping's pages stay in the
    process (and count in its resident size) for as long as the file is open, so a streamed
    run over a large checkpoint would hold every tensor it had touched."""

    def __init__(self, path: Path, tensors: dict[str, TensorInfo], metadata: dict[str, str]):
        self.path = path
        self._tensors = tensors
        self._metadata = metadata
        self._handles: dict[Path, int] = {}

    def names(self) -> list[str]:
        """Every tensor name: the index's order, or a single file's header order."""
        return list(self._tensors)

    def info(self, name: str) -> TensorInfo:
        if name not in self._tensors:
            fail("L102", f"'{self.path}' holds no tensor '{name}'", subject=str(self.path))
        return self._tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def __len__(self) -> int:
        return len(self._tensors)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def read(self, name: str) -> torch.Tensor:
        """One tensor on the CPU, in memory of its own; no other tensor is read."""
        info = self.info(name)
        data = torch.empty(info.nbytes, dtype=torch.uint8)
        try:
            read_exactly(self._handle(info.file), memoryview(data.numpy()), info.offset)
        except OSError as exc:
            where = f"{info.file}:{name}"
            fail("L102", f"cannot read '{where}': {exc.strerror or exc}", subject=str(info.file))
        return data.view(info.dtype).reshape(info.shape)

    def _handle(self, file: Path) -> int:
        if file not in self._handles:
            self._handles[file] = os.open(file, os.O_RDONLY)
        return self._handles[file]

    def metadata(self) -> dict[str, str]:
        """The ``__metadata__`` of the file, or of an index's first shard."""
        return dict(self._metadata)

    def close(self) -> None:
        """Drop the open files; tensors already read stay valid (they hold their own mapping)."""
        for handle in self._handles.values():
            os.close(handle)
        self._handles.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoint('{self.path}', {len(self)} tensors)"


def open_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint at ``path``: a .safetensors file, an index (.json) or a folder."""
    path = Path(path)
    if path.is_dir():
        path = folder_checkpoint(path)
    elif not path.is_file():
        fail("L102", f"no weights file or folder '{path}'", subject=str(path))
    if path.name.lower().endswith(".json"):
        return _from_index(path)
    header = read_header(path)
    return Checkpoint(path, header.tensors, header.metadata)


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a .safetensors file, an index, or a folder with one clear checkpoint."""
    path = Path(path)
    if path.is_file():
        return path.name.lower().endswith((".safetensors", INDEX_SUFFIX))
    if not path.is_dir():
        return False
    return any((path / name).is_file() for name in PREFERRED) or len(_files(path)) == 1


def folder_checkpoint(folder: Path) -> Path:
    """The checkpoint a folder holds: ``model.safetensors.index.json``, else ``model.safetensors``,
    else its one index, else its one .safetensors file. Files named ``masks*`` or ``quant*`` (our
    own outputs) are passed over when another candidate remains, so an output folder without a
    ``model.*`` still names its weights; several candidates are an error listing them."""
    for name in PREFERRED:
        if (folder / name).is_file():
            return folder / name
    indexes = sorted(p for p in folder.iterdir() if p.name.endswith(INDEX_SUFFIX) and p.is_file())
    candidates = indexes or _files(folder)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        fail(
            "L102",
            f"the folder '{folder}' holds no .safetensors file or index",
            subject=str(folder),
            hint="give a folder written by save_pretrained or safetensors.torch.save_file "
            "(.bin and .pt files in a folder are not read; pass a .pt file itself)",
        )
    names = [p.name for p in candidates]
    fail(
        "L102",
        f"the folder '{folder}' holds {len(names)} checkpoints: {listing(names)}",
        subject=str(folder),
        hint=f"pass the one to load, e.g. --weights {candidates[0]}"
        + ("" if indexes else " (shards need their .safetensors.index.json)"),
    )
    raise AssertionError("unreachable")


def _files(folder: Path) -> list[Path]:
    """The folder's .safetensors files, our own outputs left out if that leaves any."""
    found = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    others = [p for p in found if not p.name.lower().startswith(OUTPUT_PREFIXES)]
    return others or found


# ----- sharded indexes --------------------------------------------------------------------------


def _from_index(index: Path) -> Checkpoint:
    """The tensors an index's weight_map names, each checked against its shard's header."""
    weight_map = {name: os.path.normpath(file) for name, file in _weight_map(index).items()}
    headers = {file: _shard_header(index, file) for file in dict.fromkeys(weight_map.values())}
    _refuse_duplicates(index, headers)
    tensors = {}
    for name, file in weight_map.items():
        found = headers[file].tensors.get(name)
        if found is None:
            fail(
                "L102",
                f"'{index}' places '{name}' in '{file}', which does not hold it",
                subject=f"{index}:{name}",
                hint="the index and its shards come from different saves; save them again",
            )
        tensors[name] = found
    _refuse_unnamed(index, headers, weight_map)
    first = next(iter(headers.values()), FileHeader({}, {}))
    return Checkpoint(index, tensors, first.metadata)


def _weight_map(index: Path) -> dict[str, str]:
    try:
        data = bounded_json(index.read_text("utf-8"), object_pairs_hook=_unique_keys)
    except OSError as exc:
        fail("L102", f"cannot read '{index}': {exc.strerror or exc}", subject=str(index))
    except (UnicodeDecodeError, ValueError) as exc:
        _bad_index(index, f"not JSON ({exc})")
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        _bad_index(index, 'no "weight_map" object naming each tensor\'s shard')
    bad = [str(k) for k, v in weight_map.items() if not isinstance(v, str) or not v]
    if bad:
        _bad_index(index, f"weight_map values that are not file names: {listing(bad)}")
    return weight_map


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose key repeats names one tensor twice: json would keep the last."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"'{key}' appears twice")
        seen[key] = value
    return seen


def _shard_header(index: Path, file: str) -> FileHeader:
    if os.path.isabs(file) or file.split(os.sep)[0] == os.pardir:
        fail(
            "L102",
            f"'{index}' names the shard '{file}', outside the index's folder",
            subject=str(index),
            hint="shards lie beside their index; name each by its file name",
        )
    shard = index.parent / file
    if not shard.is_file():
        fail(
            "L102",
            f"'{index}' names the shard '{file}', which is not in '{index.parent}'",
            subject=str(index),
            hint="copy every shard beside the index (a download may have been cut short)",
        )
    return read_header(shard)


def _refuse_duplicates(index: Path, headers: dict[str, FileHeader]) -> None:
    """One tensor in two shards: which copy is meant is anyone's guess."""
    where: dict[str, str] = {}
    for file, header in headers.items():
        for name in header.tensors:
            if name in where:
                fail(
                    "L102",
                    f"'{name}' is in two shards of '{index}': '{where[name]}' and '{file}'",
                    subject=f"{index}:{name}",
                    hint="each tensor belongs in one shard; save the checkpoint again",
                )
            where[name] = file


def _refuse_unnamed(index: Path, headers: dict[str, FileHeader], weight_map: dict) -> None:
    for file, header in headers.items():
        unnamed = [name for name in header.tensors if name not in weight_map]
        if unnamed:
            fail(
                "L102",
                f"the shard '{file}' holds tensors '{index}' does not name: {listing(unnamed)}",
                subject=str(index),
                hint="the index and its shards come from different saves; save them again",
            )


def _bad_index(index: Path, why: str) -> None:
    fail(
        "L102",
        f"'{index}' is not a safetensors index: {why}",
        subject=str(index),
        hint='an index is {"metadata": {...}, "weight_map": {"tensor name": "shard file"}}',
    )


def read_exactly(handle: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from ``offset`` of the open file, however many reads it takes (a read
    returns at most about 2 GiB); a file that ends first was truncated after it was opened."""
    done = 0
    while done < len(view):
        count = os.preadv(handle, [view[done:]], offset + done)
        if count == 0:
            raise OSError(errno.EIO, "the file ends before the tensor does (truncated?)")
        done += count
