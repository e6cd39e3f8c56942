"""Mask generation on 100 x Linear(1024, 1024): dsl-compress against a plain-torch floor and NNI 3.0.

For each case the weights are saved once; the floor and ours are timed here, NNI's pruner in its
own venv (bench/nni_jobs/prune_masks.py), whose masks are checked against ours. Peak memory is
measured per case in fresh processes (bench/prune_memory.py, and the NNI job with --memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Run as a script, bench/ is on sys.path but the checkout is not: put it first, so this
# measures the dsl_compress next to this file rather than an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from measure import interleaved, print_table, write_results  # noqa: E402
from nni_venv import JOBS, NniUnavailable, nni_python, run_nni_job  # noqa: E402
from prune_cases import CASES, RATIO, PruneCase, run_ours  # noqa: E402
from weights_file import save_weights  # noqa: E402
from workloads import linear_stack  # noqa: E402

BENCH = Path(__file__).resolve().parent
Masks = dict[str, torch.Tensor]


def flat_masks(nested: dict[str, dict[str, torch.Tensor]]) -> Masks:
    return {f"{m}.{t}": mask for m, targets in nested.items() for t, mask in targets.items()}


def compare_masks(ours: Masks, theirs: Masks) -> dict:
    """Same targets, and each NNI mask (broadcast to our full shape) equal to ours."""
    differing = sorted(k for k in ours.keys() & theirs.keys() if not _same(ours[k], theirs[k]))
    missing = sorted(ours.keys() ^ theirs.keys())
    return {
        "equal": not differing and not missing,
        "targets": len(ours),
        "differing": differing[:10],
        "differing_count": len(differing),
        "only_one_side": missing[:10],
    }


def _same(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    try:
        return torch.equal(ours, theirs.bool().expand_as(ours))
    except RuntimeError:
        return False


def time_case(case: PruneCase, model: nn.Module, repeats: int) -> tuple[dict, Masks]:
    fns = {"floor": lambda: case.floor(model, RATIO), "ours": lambda: run_ours(case, model)}
    for fn in fns.values():  # one warm-up round, then single runs taking turns
        fn()
    medians = interleaved(fns, repeats=1, rounds=repeats, warmup=0)
    masks = flat_masks(run_ours(case, model).masks())
    return {"ours_s": medians["ours"], "floor_s": medians["floor"]}, masks


def nni_args(case: PruneCase, weights: Path, args: argparse.Namespace) -> list[str]:
    return [
        f"--pruner={case.nni_pruner}",
        f"--config={json.dumps(case.config_list())}",
        f"--weights={weights}",
        f"--layers={args.layers}",
        f"--width={args.width}",
    ]


def nni_time_case(case: PruneCase, weights: Path, args, tmp: Path, ours: Masks) -> dict:
    path = tmp / f"nni_masks_{case.slug}.pt"
    job = run_nni_job(
        "prune_masks.py",
        *nni_args(case, weights, args),
        f"--repeats={args.repeats}",
        f"--masks={path}",
    )
    theirs = torch.load(path, weights_only=True)
    path.unlink()
    return {
        "nni_generate_s": job["generate_s"],
        "nni_whole_s": job["whole_s"],
        "masks": compare_masks(ours, theirs),
    }


def memory_case(case: PruneCase, weights: Path, args: argparse.Namespace, nni: bool) -> dict:
    """Ours, then NNI's, each in a fresh process: RSS loaded, peak after the prune run."""
    command = [sys.executable, str(BENCH / "prune_memory.py"), case.slug, str(weights)]
    result = {"ours": fresh_process([*command, f"--layers={args.layers}", f"--width={args.width}"])}
    if nni:
        job = [str(nni_python()), str(JOBS / "prune_masks.py"), *nni_args(case, weights, args)]
        result["nni"] = fresh_process([*job, "--memory"])
    return result


def fresh_process(command: list[str]) -> dict:
    """Run ``command`` and parse the JSON object it prints last.

    Linux hands a child the parent's peak RSS as its starting ru_maxrss (fork copies the
    resident pages' count, exec keeps the maximum), so this process's gigabytes would show as
    the child's peak. Starting it from a shell that forks it first gives it a clean count.
    """
    shell = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *command]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(shell, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{command[1]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_case(case: PruneCase, model: nn.Module, weights: Path, args, nni: bool, tmp: Path) -> dict:
    print(f"{case.name}: timing...", file=sys.stderr)
    row, ours_masks = time_case(case, model, args.repeats)
    row = {"case": case.name, **row, "ratio_ours_floor": row["ours_s"] / row["floor_s"]}
    if nni:
        row.update(nni_time_case(case, weights, args, tmp, ours_masks))
        row["ratio_nni_generate_ours"] = row["nni_generate_s"] / row["ours_s"]
        row["ratio_nni_whole_ours"] = row["nni_whole_s"] / row["ours_s"]
    del ours_masks
    print(f"{case.name}: memory...", file=sys.stderr)
    row["memory"] = memory_case(case, weights, args, nni)
    return row


def model_mib(model: nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


def print_times(rows: list[dict]) -> None:
    header = ("case", "ours s", "floor s", "NNI masks s", "NNI whole s", "ours/floor")
    header += ("NNI masks/ours", "NNI whole/ours", "masks equal")
    print_table(
        header,
        [
            (
                r["case"],
                r["ours_s"],
                r["floor_s"],
                r.get("nni_generate_s"),
                r.get("nni_whole_s"),
                r["ratio_ours_floor"],
                r.get("ratio_nni_generate_ours"),
                r.get("ratio_nni_whole_ours"),
                _equal_cell(r.get("masks")),
            )
            for r in rows
        ],
    )


def _equal_cell(masks: dict | None) -> str | None:
    if masks is None:
        return None
    return "equal" if masks["equal"] else f"NOT equal ({masks['differing_count']} targets)"


def memory_rows(rows: list[dict], model: float) -> list[dict]:
    """Per case: model size, ours and NNI loaded/peak RSS, what the run added, and ratios."""
    out = []
    for r in rows:
        ours, nni = r["memory"]["ours"], r["memory"].get("nni")
        added = ours["peak_mib"] - ours["loaded_mib"]
        entry = {"case": r["case"], "model_mib": model, "ours_added_mib": added}
        entry.update(ours_added_over_model=added / model, ours_peak_mib=ours["peak_mib"])
        if nni:
            entry.update(nni_added_mib=nni["peak_mib"] - nni["loaded_mib"])
            entry.update(
                nni_peak_mib=nni["peak_mib"], ours_peak_over_nni=ours["peak_mib"] / nni["peak_mib"]
            )
        out.append(entry)
    return out


def print_memory(entries: list[dict]) -> None:
    header = ("case", "model MiB", "ours added MiB", "added/model", "ours peak MiB")
    header += ("NNI added MiB", "NNI peak MiB", "ours/NNI peak")
    keys = ("case", "model_mib", "ours_added_mib", "ours_added_over_model", "ours_peak_mib")
    keys += ("nni_added_mib", "nni_peak_mib", "ours_peak_over_nni")
    print_table(header, [tuple(e.get(k) for k in keys) for e in entries])


def nni_available() -> bool:
    try:
        nni_python()
    except NniUnavailable as err:
        print(f"NNI 3.0 peer skipped: {err}", file=sys.stderr)
        return False
    return True


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-nni", action="store_true", help="skip the NNI 3.0 peer")
    parser.add_argument(
        "--threads", type=int, help="torch threads on every side (default: torch's own choice)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        # The children (ours and NNI's) read it when torch starts.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    model = linear_stack(args.layers, args.width)
    nni = not args.no_nni and nni_available()
    if not nni:
        print("NNI 3.0 peer skipped: ours and the floor only", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench_prune_") as tmp:
        weights = save_weights(model, Path(tmp) / "weights.pt")
        rows = [run_case(case, model, weights, args, nni, Path(tmp)) for case in CASES]
    print(f"sparse_ratio {RATIO}, {args.layers} x Linear({args.width}, {args.width}), medians")
    print_times(rows)
    memory = memory_rows(rows, model_mib(model))
    print("\nmemory: fresh process per run, RSS from the OS (ru_maxrss)")
    print_memory(memory)
    payload = {"args": vars(args), "ratio": RATIO, "nni": nni, "rows": rows, "memory": memory}
    print(f"\nwrote {write_results('prune', payload)}")


if __name__ == "__main__":
    main()
