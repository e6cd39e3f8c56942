"""Our int32 packing is compressed-tensors' own, bit for bit: every width from 1 to 8 bits, row
lengths that are and are not multiples of 32, along rows and (zero points) along columns."""

from __future__ import annotations

import pytest
import torch

from dsl_compress.deploy.ct_pack import pack_columns, pack_rows, packed_columns

helpers = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")


def _codes(bits: int, shape: tuple[int, int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    low, high = -(1 << (bits - 1)), 1 << (bits - 1)
    return torch.randint(low, high, shape, generator=generator, dtype=torch.int8)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("columns", [7, 32, 45, 128, 200])
def test_rows_pack_as_compressed_tensors_packs_them(bits, columns):
    codes = _codes(bits, (5, columns), bits * 1000 + columns)
    packed = pack_rows(codes.to(torch.int16), bits)
    assert packed.dtype == torch.int32 and packed.shape == (5, packed_columns(columns, bits))
    assert torch.equal(packed, helpers.pack_to_int32(codes, bits))
    unpacked = helpers.unpack_from_int32(packed, bits, torch.Size((5, columns)))
    assert torch.equal(unpacked, codes)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_zero_points_pack_along_the_output_dimension(bits):
    codes = _codes(bits, (45, 3), bits)
    packed = pack_columns(codes.to(torch.int16), bits)
    assert torch.equal(packed, helpers.pack_to_int32(codes, bits, packed_dim=0))


def test_a_known_row():
    """int4 -8..7: each value offset by 8 and laid from the lowest bit of the first word."""
    codes = torch.arange(-8, 8, dtype=torch.int16).view(1, 16)
    assert pack_rows(codes, 4).tolist() == [[0x76543210, 0xFEDCBA98 - (1 << 32)]]


def test_many_rows_pack_in_passes_as_one():
    codes = _codes(3, (3000, 400), 7)
    assert torch.equal(pack_rows(codes.to(torch.int16), 3), helpers.pack_to_int32(codes, 3))
