"""Issue #9, item 8: `dsl-compress fmt --check` of 200,000 statements (plain, commented, and the
realistic mix) and `dsl-compress lint` of 100,000 bad lines, each a fresh process, optionally in
turns with an older checkout of the package (``--baseline-tree``) so that the ratios come from
one run on one machine.

    python bench/bench_fmt.py [--statements 200000 --bad-lines 100000 --rounds 3]
    python bench/bench_fmt.py --baseline-tree /path/to/older/checkout
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable

from bench_scaling import bad_lines, commented_statements
from measure import print_table, process_seconds, write_results
from rules_workloads import rules_text

REPO = Path(__file__).resolve().parent.parent
# "In a few seconds each", our reading on this 2-CPU machine: at most 5 s, for the issue's own
# workloads (statements with comments, as in its report of fmt's quadratic cost; bad lines);
# the realistic mix, ours and harder, is tracked without a target.
TARGET_S = 5.0


def plain_statements(n: int) -> str:
    return "".join(f"prune conv{i}.weight sparse_ratio=0.5\n" for i in range(n))


# (name, text maker, command, the option giving its size, whether the target applies)
WORKLOADS: list[tuple[str, Callable[[int], str], list[str], str, bool]] = [
    ("fmt: plain statements", plain_statements, ["fmt", "--check"], "statements", True),
    ("fmt: commented statements", commented_statements, ["fmt", "--check"], "statements", True),
    ("fmt: realistic mix", rules_text, ["fmt", "--check"], "statements", False),
    ("lint: bad lines", bad_lines, ["lint", "--format", "concise"], "bad_lines", True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=200_000)
    parser.add_argument("--bad-lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each process")
    parser.add_argument("--baseline-tree", type=Path, help="a checkout to compare with")
    args = parser.parse_args()
    trees = {"this tree": REPO}
    if args.baseline_tree is not None:
        trees["baseline"] = args.baseline_tree.resolve()
    rows, records = [], []
    with tempfile.TemporaryDirectory() as folder:
        for name, make, command, size_option, targeted in WORKLOADS:
            size = getattr(args, size_option)
            path = Path(folder) / "input.rules"
            path.write_text(make(size), encoding="utf-8")
            times = _in_turns(command + [str(path)], trees, args.rounds)
            mine = times["this tree"]
            base = times.get("baseline")
            ratio = mine["wall"] / base["wall"] if base else None
            megabytes = path.stat().st_size / 1e6
            met = ("met" if mine["wall"] <= TARGET_S else "not met") if targeted else "-"
            baseline_wall = base["wall"] if base else None
            rows.append(
                [name, size, megabytes, mine["wall"], mine["cpu"], baseline_wall, ratio, met]
            )
            record = {"workload": name, "size": size, "file_mb": megabytes, "target": targeted}
            records.append({**record, **times})
    header = ["workload", "size", "file MB", "wall s", "cpu s", "baseline wall s", "ratio"]
    print_table(header + [f"<= {TARGET_S:g} s"], rows)
    payload = {"target_s": TARGET_S, "rounds": args.rounds, "workloads": records}
    payload["baseline_tree"] = str(args.baseline_tree) if args.baseline_tree else None
    print(f"written {write_results('fmt', payload)}")


def _in_turns(command: list[str], trees: dict[str, Path], rounds: int) -> dict[str, dict]:
    """Median wall and CPU seconds of ``dsl-compress COMMAND`` run from each tree, the trees
    taking turns round by round (after one unmeasured round that warms the grammar cache and
    the OS's file cache)."""
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for round_ in range(rounds + 1):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree), "NO_COLOR": "1"}
            wall, cpu, done = process_seconds(
                [sys.executable, "-m", "dsl_compress", *command], env, tree
            )
            if done.returncode not in (0, 1) or "Traceback" in done.stderr:
                raise SystemExit(f"{name}: {command} failed\n{done.stderr[-2000:]}")
            if round_:
                measured[name].append((wall, cpu))
    return {
        name: {
            "wall": statistics.median(wall for wall, _ in values),
            "cpu": statistics.median(cpu for _, cpu in values),
        }
        for name, values in measured.items()
    }


if __name__ == "__main__":
    main()
