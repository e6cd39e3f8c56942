"""`dsl-compress apply` end to end on the bundled ResNet: wall time and peak memory of the whole
process, against a baseline process that only imports, builds the model and saves its weights."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import print_table, write_results

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules" / "resnet_channels.rules"
MODEL = "dsl_compress.models:resnet"

# The floor of any tool doing this job: start Python, import torch and the model, build it,
# write its weights.
BASELINE = """\
import sys, torch
from safetensors.torch import save_file
from dsl_compress.models import resnet
model = resnet()
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[1])
"""


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, from the OS's accounting of that child) of one process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{child.stderr.read().decode()[-2000:]}")
    child.stderr.close()
    return seconds, usage.ru_maxrss / 1024


def measure(command: list[str], repeats: int) -> dict[str, float]:
    runs = [run(command) for _ in range(repeats)]
    return {
        "seconds": statistics.median(r[0] for r in runs),
        "peak_rss_mib": statistics.median(r[1] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "dsl_compress", "apply", str(RULES), "--model", MODEL]
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "baseline: import, build, save weights": [
                sys.executable,
                "-c",
                BASELINE,
                str(Path(tmp) / "w.safetensors"),
            ],
            "apply --dry-run": [*cli, "--dry-run"],
            "apply (all outputs written)": [*cli, "--out", str(Path(tmp) / "out"), "--overwrite"],
        }
        figures = {name: measure(command, args.repeats) for name, command in cases.items()}
    base = figures["baseline: import, build, save weights"]
    rows = [
        [name, f["seconds"], f["seconds"] / base["seconds"], f["peak_rss_mib"]]
        for name, f in figures.items()
    ]
    print_table(["process", "median s", "vs baseline", "peak RSS MiB"], rows)
    out = write_results(
        "apply", {"args": vars(args), "rules": RULES.name, "model": MODEL, **figures}
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
