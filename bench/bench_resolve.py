"""Rule resolution at scale: a 100,000-module model and 1,000 statements, against NNI 3.0's
selection and canonicalization of the equivalent config_list."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import dsl_compress as dc
from measure import print_table, write_results
from nni_venv import NniUnavailable, run_nni_job
from rules_workloads import rules_text
from workloads import wide_model

TARGET_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modules", type=int, default=100_000)
    parser.add_argument("--statements", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--nni-configs",
        type=int,
        default=40,
        help="configs NNI runs, evenly spaced, its time scaled to the whole list (0: all)",
    )
    args = parser.parse_args()
    print(f"building a {args.modules}-module model (meta device)...", flush=True)
    model = wide_model(args.modules)
    modules = sum(1 for _ in model.named_modules())
    text = rules_text(args.statements)

    compiled = dc.parse(text, "bench.rules").compile(model)
    phases = _phases(text, model, args.repeats)
    config_lists = dc.parse(text, "bench.rules").compile().config_list
    nni = _nni(config_lists, args)
    rows = [
        ["parse", phases["parse"], None],
        ["compile + resolve (the plan)", phases["resolve"], None],
        ["parse + compile + resolve", phases["total"], TARGET_S],
        ["config_list from the plan (on request)", phases["config_list"], None],
    ]
    if nni is not None:
        rows.append([nni["label"], nni["seconds"], None])
    print_table(["stage", "median s", "target s"], rows)
    ratio = nni["seconds"] / phases["total"] if nni else None
    if ratio:
        print(f"NNI / ours: {ratio:.0f}x")
    print(
        f"{modules} modules, {args.statements} statements, {len(compiled.plan.entries)} plan "
        f"entries, {len(compiled.diagnostics)} diagnostics; target met: "
        f"{phases['total'] < TARGET_S}"
    )
    path = write_results(
        "resolve",
        {
            "args": vars(args),
            "modules": modules,
            "plan_entries": len(compiled.plan.entries),
            "diagnostics": len(compiled.diagnostics),
            "seconds": phases,
            "target_s": TARGET_S,
            "target_met": phases["total"] < TARGET_S,
            "nni": nni,
            "nni_over_ours": ratio,
        },
    )
    print(f"wrote {path}")


def _phases(text: str, model, repeats: int) -> dict[str, float]:
    """Median seconds of each stage, and of the whole, over ``repeats`` runs."""
    times: dict[str, list[float]] = {"parse": [], "resolve": [], "total": [], "config_list": []}
    for _ in range(repeats):
        start = time.perf_counter()
        rules = dc.parse(text, "bench.rules")
        parsed = time.perf_counter()
        compiled = rules.compile(model)
        resolved = time.perf_counter()
        compiled.config_list
        listed = time.perf_counter()
        times["parse"].append(parsed - start)
        times["resolve"].append(resolved - parsed)
        times["total"].append(resolved - start)
        times["config_list"].append(listed - resolved)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def _nni(config_lists: dict, args) -> dict | None:
    """NNI's time over the model-free config_list (one config per statement)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config_list.json"
        path.write_text(json.dumps(config_lists))
        try:
            found = run_nni_job(
                "select_configs.py", str(path), str(args.modules), str(args.nni_configs)
            )
        except NniUnavailable as exc:
            print(f"NNI 3.0 skipped: {exc}")
            return None
    scaled = found["seconds"] * found["of"] / found["configs"]
    label = f"NNI 3.0 select + canonicalize ({found['configs']} of {found['of']} configs"
    label += ", scaled)" if found["configs"] < found["of"] else ")"
    return {**found, "seconds": scaled, "measured_seconds": found["seconds"], "label": label}


if __name__ == "__main__":
    main()
