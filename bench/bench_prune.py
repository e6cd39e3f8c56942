"""Mask generation on 100 x Linear(1024, 1024): dsl-compress against a plain-torch floor, same process."""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import dsl_compress as dc

RESULTS = Path(__file__).parent / "results" / "prune.json"


def build(layers: int, width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])


def floor_l1(model: nn.Module, ratio: float) -> list[torch.Tensor]:
    """One pass: row L1 norms, the k smallest rows, a bool mask per weight."""
    masks = []
    for layer in model:
        norms = layer.weight.detach().abs().sum(1)
        k = int(norms.numel() * ratio)
        pruned = torch.topk(norms, k, largest=False).indices
        keep = torch.ones_like(norms, dtype=torch.bool)
        keep[pruned] = False
        masks.append(keep[:, None].expand_as(layer.weight))
    return masks


def floor_level(model: nn.Module, ratio: float) -> list[torch.Tensor]:
    masks = []
    for layer in model:
        w = layer.weight.detach().abs().flatten()
        k = int(w.numel() * ratio)
        threshold = torch.kthvalue(w, k).values
        masks.append((layer.weight.detach().abs() > threshold))
    return masks


def floor_global(model: nn.Module, ratio: float) -> list[torch.Tensor]:
    norms = torch.cat([layer.weight.detach().abs().sum(1) for layer in model])
    k = int(norms.numel() * ratio)
    threshold = torch.kthvalue(norms, k).values
    return [(layer.weight.detach().abs().sum(1) > threshold)[:, None] for layer in model]


def ours(model: nn.Module, ratio: float, metric: str, config: dict) -> dict:
    compression = dc.prune(
        model, [{"op_types": ["Linear"], "sparse_ratio": ratio, **config}], metric
    )
    masks = compression.masks()
    compression.restore()
    return masks


CASES = {
    "l1 out_channel": (lambda m, r: ours(m, r, "l1", {}), floor_l1),
    "level element-wise": (lambda m, r: ours(m, r, "level", {}), floor_level),
    "l1 global group": (lambda m, r: ours(m, r, "l1", {"global_group_id": 0}), floor_global),
}


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = build(args.layers, args.width)
    rows = []
    for name, (run_ours, run_floor) in CASES.items():
        t_floor = median_time(lambda: run_floor(model, 0.5), args.repeats)
        t_ours = median_time(lambda: run_ours(model, 0.5), args.repeats)
        rows.append({"case": name, "ours_s": t_ours, "floor_s": t_floor, "ratio": t_ours / t_floor})
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'case':<22}{'ours (s)':>10}{'floor (s)':>11}{'ours/floor':>12}")
    for row in rows:
        print(
            f"{row['case']:<22}{row['ours_s']:>10.3f}{row['floor_s']:>11.3f}{row['ratio']:>12.2f}"
        )
    print(
        f"peak RSS {peak_mib:.0f} MiB; model {args.layers * args.width * args.width * 4 / 2**20:.0f} MiB"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    machine = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    RESULTS.write_text(
        json.dumps(
            {"machine": machine, "args": vars(args), "rows": rows, "peak_rss_mib": peak_mib},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
