"""A global group's threshold: the old concatenate + sort + cumsum against the radix selection.

Times both in this process on the same seeded element-wise metrics (checking they give the same
threshold, bit for bit), then measures each once more in a fresh process: the peak RSS the call
adds above the process's resident size just before it. The selection is also measured streamed,
each pass regenerating one member at a time from its seed, as a checkpoint-streamed run reads
them: nothing of the group is resident, so its peak is one member and the bins.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

# Run as a script, bench/ is on sys.path but the checkout is not: put it first, so this
# measures the dsl_compress next to this file rather than an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dsl_compress.engine.global_threshold import weighted_threshold  # noqa: E402
from measure import interleaved, peak_rss_mib, print_table, rss_mib, write_results  # noqa: E402

RATIO = 0.5
METHODS = ("sort", "select", "select-streamed")


def member(index: int, rows: int, cols: int) -> torch.Tensor:
    """Member ``index``'s element-wise metric (|w| of a seeded normal weight), the same on
    every call."""
    generator = torch.Generator().manual_seed(index)
    return torch.randn(rows, cols, generator=generator).abs_()


def sorted_threshold(metrics: list[torch.Tensor], grains: list[int], count: int) -> torch.Tensor:
    """The code the selection replaced (masks.py before issue 10), kept here as the baseline."""
    device = metrics[0].device
    values = torch.cat([m.reshape(-1).to(device) for m in metrics])
    counts = torch.tensor([m.numel() for m in metrics], device=device)
    weights = torch.tensor(grains, device=device).repeat_interleave(counts)
    ordered, order = values.sort()
    reached = weights[order].cumsum(0)
    first = torch.searchsorted(reached, torch.tensor([count], device=device), right=True)
    return ordered[first.clamp(max=ordered.numel() - 1)].reshape(())


def count_of(args: argparse.Namespace) -> int:
    return int(args.members * args.rows * args.cols * RATIO)


def streamed(args: argparse.Namespace) -> Iterator[tuple[torch.Tensor, int]]:
    for index in range(args.members):
        yield member(index, args.rows, args.cols), 1


def run_method(method: str, metrics: list[torch.Tensor], args: argparse.Namespace):
    if method == "sort":
        return sorted_threshold(metrics, [1] * len(metrics), count_of(args))
    if method == "select":
        return weighted_threshold(lambda: ((m, 1) for m in metrics), count_of(args))
    return weighted_threshold(lambda: streamed(args), count_of(args))


def child(method: str, args: argparse.Namespace) -> dict:
    """One method in this fresh process: RSS before the call, the peak after it."""
    metrics = [] if method == "select-streamed" else resident(args)
    before, peak_before = rss_mib(), peak_rss_mib()
    threshold = run_method(method, metrics, args)
    peak = peak_rss_mib()
    return {
        "rss_before_mib": before,
        "peak_before_mib": peak_before,
        "peak_mib": peak,
        "added_mib": peak - before,
        "threshold_bits": int(threshold.view(torch.int32)),
    }


def resident(args: argparse.Namespace) -> list[torch.Tensor]:
    return [member(i, args.rows, args.cols) for i in range(args.members)]


def fresh_process(method: str, args: argparse.Namespace) -> dict:
    """This script's --child mode, started from a forking shell: Linux starts a child's
    ru_maxrss at its parent's peak, and this parent holds the whole group."""
    sizes = [f"--members={args.members}", f"--rows={args.rows}", f"--cols={args.cols}"]
    threads = [f"--threads={args.threads}"] if args.threads else []
    command = [sys.executable, __file__, f"--child={method}", *sizes, *threads]
    shell = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *command]
    done = subprocess.run(shell, capture_output=True, text=True, env=dict(os.environ))
    if done.returncode != 0:
        raise RuntimeError(f"--child={method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timings(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, int]]:
    metrics = resident(args)
    fns = {m: (lambda m=m: run_method(m, metrics, args)) for m in METHODS}
    bits = {m: int(fn().view(torch.int32)) for m, fn in fns.items()}  # also the warm-up
    return interleaved(fns, repeats=1, rounds=args.repeats, warmup=0), bits


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=24)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    group_mib = args.members * args.rows * args.cols * 4 / 2**20
    print(f"timing {args.members} x {args.rows}x{args.cols} float32 ({group_mib:.0f} MiB)...")
    times, bits = timings(args)
    memory = {method: fresh_process(method, args) for method in METHODS}
    same = len(set(bits.values()) | {m["threshold_bits"] for m in memory.values()}) == 1
    rows = [
        [m, times[m], times["sort"] / times[m], memory[m]["added_mib"], memory[m]["peak_mib"]]
        for m in METHODS
    ]
    threads = torch.get_num_threads()
    print(
        f"sparse_ratio {RATIO}, group {group_mib:.0f} MiB, {threads} threads, medians of {args.repeats}"
    )
    print_table(["method", "seconds", "sort / method", "added MiB", "peak MiB"], rows)
    print(f"same threshold bits everywhere: {same}")
    payload = {"args": vars(args), "group_mib": group_mib, "same_threshold": same}
    payload.update({"seconds": times, "memory": memory})
    print(f"\nwrote {write_results('global_threshold', payload)}")


if __name__ == "__main__":
    main()
