"""Seeded checkpoints of a chosen size for the streaming benchmarks (issue 10): sharded safetensors
the Hugging Face way (or one file), a model spec `model.py` and the workload's `rules.rules`.

The model is the issue's: N blocks of `Linear(2048, 4096)`, `BatchNorm1d(4096)`,
`Linear(4096, 2048)` (24 blocks are 1.6 GB in fp32). Tensors are generated one at a time from
seeds of their own, so a tensor's values do not depend on the shard size or the block count,
and the generator never holds more than one shard (one tensor with ``--single-file``).

    python bench/make_checkpoint.py OUT 1.6               # 1.6 GB (decimal), 24 blocks in fp32
    python bench/make_checkpoint.py OUT 6 --dtype bf16    # 6 blocks
    python bench/make_checkpoint.py OUT 0.4 --shard-size 100MB --single-file
"""

from __future__ import annotations

import argparse
import json
import math
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save_file

WIDTH, HIDDEN = 2048, 4096
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# safetensors' names of the dtypes written here.
_TAGS = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64"}
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"

MODEL_PY = '''\
"""The benchmark checkpoint's architecture, written by bench/make_checkpoint.py."""

import torch
from torch import nn

BLOCKS = {blocks}
DTYPE = torch.{dtype}


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear({width}, {hidden}, dtype=DTYPE)
        self.bn = nn.BatchNorm1d({hidden}, dtype=DTYPE)
        self.down = nn.Linear({hidden}, {width}, dtype=DTYPE)

    def forward(self, x):
        return x + self.down(torch.relu(self.bn(self.up(x))))


class Model(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(blocks))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def build():
    return Model(BLOCKS)
'''

RULES = """\
# The workload of issue 10 on the checkpoint of bench/make_checkpoint.py.
prune blocks.*.up.weight sparse_ratio=0.5 granularity=out_channel metric=l1
align blocks.*.bn.weight with blocks.*.up.weight dims=[0]
align blocks.*.bn.bias with blocks.*.bn.weight dims=[0]
prune blocks.*.down.weight sparse_ratio=0.5 metric=level group=down
quantize blocks.*.up.weight quant_dtype=int8 quant_scheme=symmetric granularity=out_channel
quantize blocks.*.down.weight quant_dtype=int4 quant_scheme=symmetric
"""


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the checkpoint: its name, shape, dtype and how its values are drawn."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    kind: str  # weight, bias, scale, shift, mean, var, count

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _itemsize(self.dtype)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def block_specs(block: int, dtype: torch.dtype) -> list[TensorSpec]:
    """Block ``block``'s tensors in state_dict order."""
    p = f"blocks.{block}."
    return [
        TensorSpec(p + "up.weight", (HIDDEN, WIDTH), dtype, "weight"),
        TensorSpec(p + "up.bias", (HIDDEN,), dtype, "bias"),
        TensorSpec(p + "bn.weight", (HIDDEN,), dtype, "scale"),
        TensorSpec(p + "bn.bias", (HIDDEN,), dtype, "shift"),
        TensorSpec(p + "bn.running_mean", (HIDDEN,), dtype, "mean"),
        TensorSpec(p + "bn.running_var", (HIDDEN,), dtype, "var"),
        TensorSpec(p + "bn.num_batches_tracked", (), torch.int64, "count"),
        TensorSpec(p + "down.weight", (WIDTH, HIDDEN), dtype, "weight"),
        TensorSpec(p + "down.bias", (WIDTH,), dtype, "bias"),
    ]


def checkpoint_specs(blocks: int, dtype: torch.dtype) -> list[TensorSpec]:
    return [spec for block in range(blocks) for spec in block_specs(block, dtype)]


def blocks_for(size: str, dtype: torch.dtype) -> int:
    """A plain integer is a block count; ``1.6``, ``1.6GB`` or ``400MB`` a size (decimal units)."""
    if re.fullmatch(r"\d+", size):
        return int(size)
    per_block = sum(spec.nbytes for spec in block_specs(0, dtype))
    return max(1, round(parse_bytes(size, default_unit="GB") / per_block))


def parse_bytes(text: str, default_unit: str = "B") -> int:
    """``500MB``, ``1.6GB``, ``2e9`` (decimal units, as Hugging Face's ``max_shard_size``)."""
    found = re.fullmatch(r"\s*([\d.eE+]+)\s*([KMG]?B?)\s*", text.upper())
    if not found:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500MB, 1.6GB)")
    unit = found.group(2) or default_unit
    scale = {"B": 1, "KB": 1e3, "K": 1e3, "MB": 1e6, "M": 1e6, "GB": 1e9, "G": 1e9}[unit]
    return int(float(found.group(1)) * scale)


def make_tensor(spec: TensorSpec, seed: int, index: int) -> torch.Tensor:
    """The values of tensor number ``index``, from a generator seeded for it alone."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    if spec.kind == "count":
        return torch.tensor(1000, dtype=torch.int64)
    if spec.kind in ("scale", "var"):
        values = torch.rand(spec.shape, generator=gen) + 0.5
    else:
        fan_in = spec.shape[-1] if len(spec.shape) == 2 else 1
        std = 1 / math.sqrt(fan_in) if spec.kind == "weight" else 0.1
        values = torch.randn(spec.shape, generator=gen).mul_(std)
    return values.to(spec.dtype)


def shard_plan(specs: Sequence[TensorSpec], shard_bytes: int) -> list[list[int]]:
    """Tensor indexes per shard, in order; a shard closes before it would pass ``shard_bytes``."""
    shards: list[list[int]] = [[]]
    size = 0
    for index, spec in enumerate(specs):
        if shards[-1] and size + spec.nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(index)
        size += spec.nbytes
    return shards


def write_sharded(folder: Path, specs: Sequence[TensorSpec], shard_bytes: int, seed: int) -> Path:
    """``model-0000i-of-0000K.safetensors`` files and the index naming each tensor's shard."""
    plan = shard_plan(specs, shard_bytes)
    weight_map = {}
    for number, indexes in enumerate(plan, 1):
        name = f"model-{number:05d}-of-{len(plan):05d}.safetensors"
        shard = {specs[i].name: make_tensor(specs[i], seed, i) for i in indexes}
        save_file(shard, folder / name, metadata={"format": "pt"})
        del shard  # the next shard is generated with this one gone
        weight_map.update({specs[i].name: name for i in indexes})
    index = {"metadata": {"total_size": sum(s.nbytes for s in specs)}, "weight_map": weight_map}
    path = folder / INDEX
    path.write_text(json.dumps(index, indent=2) + "\n")
    return path


def write_single(path: Path, specs: Sequence[TensorSpec], seed: int) -> Path:
    """One ``.safetensors`` file written tensor by tensor: the header first (the offsets follow
    from the shapes), then each tensor's bytes as it is generated."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for spec in specs:
        entry = {"dtype": _TAGS[spec.dtype], "shape": list(spec.shape)}
        header[spec.name] = {**entry, "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(text)) + text)
        for index, spec in enumerate(specs):
            tensor = make_tensor(spec, seed, index).reshape(-1).view(torch.uint8)
            out.write(tensor.numpy().tobytes())
    return path


def make_checkpoint(
    folder: Path,
    blocks: int,
    dtype: torch.dtype = torch.float32,
    shard_bytes: int = 500_000_000,
    single_file: bool = False,
    seed: int = 0,
) -> Path:
    """Write the checkpoint, ``model.py`` and ``rules.rules`` into ``folder``; return the weights
    path to pass as ``--weights`` (the index, or ``model.safetensors`` with ``single_file``)."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = checkpoint_specs(blocks, dtype)
    dtype_name = str(dtype).removeprefix("torch.")
    text = MODEL_PY.format(blocks=blocks, dtype=dtype_name, width=WIDTH, hidden=HIDDEN)
    (folder / "model.py").write_text(text)
    (folder / "rules.rules").write_text(RULES)
    if single_file:
        return write_single(folder / SINGLE, specs, seed)
    return write_sharded(folder, specs, shard_bytes, seed)


def largest_tensor_bytes(blocks: int, dtype: torch.dtype) -> int:
    return max(spec.nbytes for spec in block_specs(0, dtype))


def checkpoint_bytes(blocks: int, dtype: torch.dtype) -> int:
    return blocks * sum(spec.nbytes for spec in block_specs(0, dtype))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="output folder (created)")
    parser.add_argument("size", help="GB (0.4, 1.6, 6.4GB, 400MB) or a number of blocks (24)")
    parser.add_argument("--shard-size", type=parse_bytes, default="500MB", help="per shard")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--single-file", action="store_true", help=f"one {SINGLE}, no index")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dtype = DTYPES[args.dtype]
    blocks = blocks_for(args.size, dtype)
    path = make_checkpoint(args.folder, blocks, dtype, args.shard_size, args.single_file, args.seed)
    size = checkpoint_bytes(blocks, dtype)
    print(f"{path}: {blocks} blocks, {size / 1e9:.3f} GB {args.dtype}", file=sys.stderr)
    print(path)


if __name__ == "__main__":
    main()
