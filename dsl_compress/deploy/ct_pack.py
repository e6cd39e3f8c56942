"""compressed-tensors' int32 packing: signed b-bit codes, offset by 2^(b-1), laid end to end
from the lowest bit of each row's first word (a value may straddle two words)."""

from __future__ import annotations

import math

import torch

# Rows packed per pass: the int64 work buffers of a pass stay a few MiB whatever the tensor.
_ROWS_PER_PASS_ELEMENTS = 1 << 20


def packed_columns(columns: int, bits: int) -> int:
    """The int32 words a row of ``columns`` b-bit values takes."""
    return math.ceil(columns * bits / 32)


def pack_rows(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack each row of 2-D signed ``codes`` (in ``[-2^(b-1), 2^(b-1))``) into int32 words:
    element i of a row occupies bits ``i*b`` to ``i*b+b-1`` of the row's bit string, word 0's
    least significant bit first."""
    rows, columns = codes.shape
    out = torch.empty((rows, packed_columns(columns, bits)), dtype=torch.int32)
    step = max(1, _ROWS_PER_PASS_ELEMENTS // max(columns, 1))
    for start in range(0, rows, step):
        out[start : start + step] = _pack(codes[start : start + step], bits)
    return out


def pack_columns(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack along dim 0 (each column's values end to end), as zero points are packed."""
    return pack_rows(codes.t().contiguous(), bits).t().contiguous()


def _pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """One pass of :func:`pack_rows` over a few rows."""
    rows, columns = codes.shape
    chunks = math.ceil(columns / 32)
    offset = codes.to(torch.int64) + (1 << (bits - 1))
    if chunks * 32 != columns:
        offset = torch.nn.functional.pad(offset, (0, chunks * 32 - columns))
    words = _whole_words(offset, bits) if 32 % bits == 0 else _straddling(offset, bits)
    flat = words.reshape(rows, chunks * bits)[:, : packed_columns(columns, bits)]
    return torch.where(flat >= 1 << 31, flat - (1 << 32), flat).to(torch.int32)


def _whole_words(values: torch.Tensor, bits: int) -> torch.Tensor:
    """b divides 32: each word holds 32/b consecutive values, none straddles."""
    per_word = 32 // bits
    shifts = torch.arange(0, 32, bits, dtype=torch.int64)
    return (values.view(-1, per_word) << shifts).sum(dim=1)


def _straddling(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Any b: 32 values fill exactly b words; value i starts at bit i*b of its chunk."""
    # Position-major: the i-th value of every chunk is one contiguous row.
    by_position = values.view(-1, 32).t().contiguous()
    words = torch.zeros((bits, by_position.shape[1]), dtype=torch.int64)
    for index in range(32):
        word, shift = divmod(index * bits, 32)
        words[word] |= (by_position[index] << shift) & 0xFFFFFFFF
        if shift + bits > 32:
            words[word + 1] |= by_position[index] >> (32 - shift)
    return words.t()
