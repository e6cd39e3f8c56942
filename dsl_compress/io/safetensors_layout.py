"""Where a safetensors file puts each tensor: dtype names, the planned tensors, their split into
shards, and each file's header with the offsets its tensors' bytes go to.

The format (github.com/huggingface/safetensors, README "Format"): 8 bytes, the header's length N
as a little-endian u64; N bytes of UTF-8 JSON mapping each tensor name to its dtype, shape and
``data_offsets`` [begin, end) in the data after the header, plus an optional ``__metadata__``
map of strings; then the data. Readers check that the ranges tile the data with no hole or
overlap and that each range holds exactly its shape's bytes. Like safetensors' own writer we
pad the header with spaces to a multiple of 8 and order each file's tensors by element size,
largest first, so every tensor starts at a multiple of its element size.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from dsl_compress.diagnostics import fail
from dsl_compress.engine.stream_data import PlannedTensor

# safetensors' name of each torch dtype it stores (the unsigned 16-64 bit ones since torch 2.3).
_NAMES = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "uint16": "U16",
    "int32": "I32",
    "uint32": "U32",
    "int64": "I64",
    "uint64": "U64",
    "float16": "F16",
    "bfloat16": "BF16",
    "float32": "F32",
    "float64": "F64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "complex64": "C64",
}
DTYPE_NAMES = {getattr(torch, t): name for t, name in _NAMES.items() if hasattr(torch, t)}


def shard_groups(tensors: Sequence[PlannedTensor], limit: int | None) -> list[list[PlannedTensor]]:
    """The tensors split into shards of at most ``limit`` data bytes, greedily in their order;
    a tensor larger than ``limit`` gets a shard of its own. One group without a limit."""
    groups: list[list[PlannedTensor]] = [[]]
    size = 0
    for planned in tensors:
        if limit is not None and groups[-1] and size + planned.nbytes > limit:
            groups.append([])
            size = 0
        groups[-1].append(planned)
        size += planned.nbytes
    return groups


def shard_names(prefix: str, count: int) -> list[str]:
    """'<prefix>.safetensors', or '<prefix>-00001-of-0000N.safetensors' for each of N shards."""
    if count == 1:
        return [f"{prefix}.safetensors"]
    return [f"{prefix}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


@dataclass(frozen=True)
class FileLayout:
    """One file's header (length prefix included) and where each tensor's bytes start in it."""

    header: bytes
    starts: dict[str, int]


def file_layout(tensors: Sequence[PlannedTensor], metadata: Mapping[str, str] | None) -> FileLayout:
    """The header and absolute offsets of a file holding ``tensors``."""
    ordered = sorted(tensors, key=lambda t: (-t.dtype.itemsize, t.name))
    entries: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offsets, end = {}, 0
    for planned in ordered:
        offsets[planned.name] = end
        begin, end = end, end + planned.nbytes
        entries[planned.name] = {
            "dtype": DTYPE_NAMES[planned.dtype],
            "shape": list(planned.shape),
            "data_offsets": [begin, end],
        }
    text = json.dumps(entries, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    header = len(text).to_bytes(8, "little") + text
    return FileLayout(header, {name: len(header) + offset for name, offset in offsets.items()})


def check_plan(tensors: Sequence[PlannedTensor], metadata: Mapping[str, str] | None) -> None:
    """X803 for a plan no safetensors file can hold."""
    twice = sorted(name for name, count in Counter(t.name for t in tensors).items() if count > 1)
    if twice:
        fail("X803", f"tensor(s) {', '.join(twice)} planned more than once")
    for planned in tensors:
        if planned.dtype not in DTYPE_NAMES:
            fail("X803", f"tensor '{planned.name}': safetensors stores no {planned.dtype}")
        if planned.name == "__metadata__" or any(size < 0 for size in planned.shape):
            fail("X803", f"tensor '{planned.name}' of shape {planned.shape} cannot be stored")
    if metadata and not all(isinstance(v, str) for pair in metadata.items() for v in pair):
        fail("X803", "safetensors metadata maps strings to strings")
