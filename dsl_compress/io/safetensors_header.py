"""A .safetensors file's header, read and checked without reading any tensor data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from dsl_compress.diagnostics import fail
from dsl_compress.schema.config_text import bounded_json

# safetensors refuses headers over 100 MB; a larger length is a file of another format.
MAX_HEADER_BYTES = 100 * 1024 * 1024
# The format's dtype names; getattr keeps the ones an older torch lacks out of the table.
_DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "C64": "complex64",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}
DTYPES: dict[str, torch.dtype] = {
    key: getattr(torch, name) for key, name in _DTYPE_NAMES.items() if hasattr(torch, name)
}


@dataclass(frozen=True)
class TensorInfo:
    """What a header says of one tensor: its name, shape, dtype, file, size in bytes and where
    in the file its bytes start (None for a tensor not stored in a safetensors file)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    file: Path
    nbytes: int
    offset: int | None = None


@dataclass(frozen=True)
class FileHeader:
    """One file's tensors in header order, and its ``__metadata__``."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]


def read_header(file: Path) -> FileHeader:
    """The header of ``file``: 8 bytes of length, then that many bytes of JSON; nothing more
    is read. Every entry is checked (dtype, shape, offsets inside the file, sizes that agree),
    so that reading any tensor afterwards cannot fail on the file's layout."""
    raw, data_size = _header_bytes(file)
    try:
        header = bounded_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        _malformed(file, f"its header is not JSON ({exc})")
    if not isinstance(header, dict):
        _malformed(file, f"its header is a JSON {type(header).__name__}, not an object")
    metadata = _metadata(file, header.pop("__metadata__", None))
    start = 8 + len(raw)
    tensors = {name: _tensor_info(file, name, entry, start) for name, entry in header.items()}
    _check_layout(file, tensors, header, data_size)
    return FileHeader(tensors, metadata)


def _header_bytes(file: Path) -> tuple[bytes, int]:
    """The header's JSON bytes and the size of the data section after it."""
    try:
        with file.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            prefix = stream.read(8)
            length = int.from_bytes(prefix, "little")
            if len(prefix) < 8 or length > min(MAX_HEADER_BYTES, size - 8):
                _malformed(file, f"not a safetensors file ({size} bytes, no header fits)")
            return stream.read(length), size - 8 - length
    except OSError as exc:
        fail("L102", f"cannot read '{file}': {exc.strerror or exc}", subject=str(file))
    raise AssertionError("unreachable")


def _metadata(file: Path, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        _malformed(file, "its __metadata__ is not an object of strings")
    return value


def _tensor_info(file: Path, name: str, entry: Any, start: int) -> TensorInfo:
    if not isinstance(entry, dict):
        _malformed(file, f"'{name}' is a JSON {type(entry).__name__}, not a tensor entry", name)
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        known = ", ".join(DTYPES)
        _malformed(file, f"'{name}' has dtype {dtype!r}, not one of {known}", name)
    if not isinstance(shape, list) or not all(_count(n) for n in shape):
        _malformed(file, f"'{name}' has shape {shape!r}, not a list of sizes", name)
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(n) for n in offsets):
        _malformed(file, f"'{name}' has data_offsets {offsets!r}, not [begin, end]", name)
    begin, end = offsets
    nbytes = DTYPES[dtype].itemsize * _numel(shape)
    if end - begin != nbytes:
        _malformed(
            file,
            f"'{name}' spans {end - begin} bytes, but {dtype} {shape} takes {nbytes}",
            name,
        )
    return TensorInfo(name, tuple(shape), DTYPES[dtype], file, nbytes, start + begin)


def _check_layout(file: Path, tensors: dict, header: dict, data_size: int) -> None:
    """The tensors tile the data section: no gap, no overlap, nothing past its end."""
    spans = sorted((header[n]["data_offsets"], n) for n in tensors)
    at = 0
    for (begin, end), name in spans:
        if begin != at:
            _malformed(file, f"'{name}' starts at byte {begin} of the data, not {at}", name)
        at = end
    if at != data_size:
        what = "truncated" if at > data_size else "longer than its tensors"
        _malformed(
            file,
            f"the file is {what}: its tensors take {at} bytes of data, it holds {data_size}",
            hint="a download or copy was cut short or changed the file; fetch it again",
        )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _numel(shape: list[int]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def _malformed(file: Path, why: str, name: str | None = None, hint: str | None = None) -> NoReturn:
    where = f"{file}:{name}" if name is not None else str(file)
    fail(
        "L102",
        f"cannot read '{file}': {why}",
        subject=where,
        hint=hint or "write it with safetensors.torch.save_file or save_pretrained",
    )
    raise AssertionError("unreachable")
