"""The plain-torch floor of issue 10's workload on a checkpoint of `make_checkpoint.py`: what any
tool must at least do, written the short way with the whole state dict in memory.

Load every tensor; l1 row norms of each up projection and its top half of rows kept (the BN's
weight and bias masked with them); one k-th value of |w| over the whole group of down
projections (`torch.kthvalue` on their concatenation); masks applied; int8 per-channel
symmetric fake quantization of the up projections and int4 per-tensor of the down ones; then
the weights, the full-shape bool masks and the scales saved, as `apply` writes them.

    python bench/torch_floor.py CHECKPOINT --out DIR   # CHECKPOINT: index, .safetensors or folder
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

RATIO = 0.5


def shard_files(path: Path) -> list[Path]:
    """The files holding the checkpoint: an index's shards, one file, or a folder's either."""
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        path = index if index.exists() else path / "model.safetensors"
    if path.name.endswith(".index.json"):
        weight_map = json.loads(path.read_text())["weight_map"]
        return [path.parent / name for name in sorted(set(weight_map.values()))]
    return [path]


def load_all(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in shard_files(path):
        state.update(load_file(file))
    return state


def blocks_of(state: dict[str, torch.Tensor]) -> list[str]:
    return sorted({k.rsplit(".", 2)[0] for k in state if k.endswith(".up.weight")})


def prune_up(state: dict[str, torch.Tensor], block: str) -> dict[str, torch.Tensor]:
    """The up projection's kept rows by l1 norm, and the BN masked on the same channels."""
    weight = state[f"{block}.up.weight"]
    norms = torch.linalg.vector_norm(weight.float(), ord=1, dim=1)
    rows = torch.zeros(weight.shape[0], dtype=torch.bool)
    rows[norms.topk(weight.shape[0] - int(weight.shape[0] * RATIO)).indices] = True
    weight.mul_(rows[:, None])
    for name in ("bn.weight", "bn.bias"):
        state[f"{block}.{name}"].mul_(rows)
    masks = {f"{block}.up.weight": rows[:, None].expand(weight.shape)}
    masks.update({f"{block}.bn.{t}": rows.clone() for t in ("weight", "bias")})
    return masks


def prune_down_group(state: dict[str, torch.Tensor], blocks: list[str]) -> dict:
    """One k-th value of |w| over every down projection, each masked at it."""
    names = [f"{block}.down.weight" for block in blocks]
    flat = torch.cat([state[n].reshape(-1).abs().float() for n in names])
    threshold = flat.kthvalue(max(1, int(flat.numel() * RATIO))).values
    del flat
    masks = {}
    for name in names:
        masks[name] = state[name].abs() > threshold
        state[name].mul_(masks[name])
    return masks


def fake_quantize(weight: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """Symmetric fake quantization in place; returns the scale."""
    qmax = 2 ** (bits - 1) - 1
    amax = weight.abs().amax(dim=1, keepdim=True) if per_channel else weight.abs().amax()
    scale = (amax.float() / qmax).clamp_min(torch.finfo(torch.float32).eps)
    quantized = (weight.float() / scale).round_().clamp_(-qmax, qmax).mul_(scale)
    weight.copy_(quantized)
    return scale


def run(checkpoint: Path, out: Path) -> None:
    state = load_all(checkpoint)
    blocks = blocks_of(state)
    masks = {}
    for block in blocks:
        masks.update(prune_up(state, block))
    masks.update(prune_down_group(state, blocks))
    scales = {}
    for block in blocks:
        scales[f"{block}.up.weight.scale"] = fake_quantize(state[f"{block}.up.weight"], 8, True)
        down = state[f"{block}.down.weight"]
        scales[f"{block}.down.weight.scale"] = fake_quantize(down, 4, False)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, out / "model.safetensors")
    save_file({k: v.contiguous() for k, v in masks.items()}, out / "masks.safetensors")
    save_file({k: v.reshape(-1) for k, v in scales.items()}, out / "quant.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="index .json, .safetensors or folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args()
    start = time.perf_counter()
    run(args.checkpoint, args.out)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch floor: {seconds:.2f} s after imports, peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
