"""The `dsl-compress lint` process on a manifest (`--manifest`, torch-free) against lint without a
model and lint with the model itself (`--model`, which loads torch), on an example rules file."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dsl_compress.io.manifest import build_manifest, save_manifest
from dsl_compress.models import example_model
from measure import print_table, write_results

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules" / "resnet_channels.rules"
MODEL_SPEC = "dsl_compress.models:resnet"
NO_MODEL = "lint, no model"
ON_MANIFEST = "lint --manifest"
ON_MODEL = "lint --model"
TORCH_PROBE = (
    "import sys; from dsl_compress.cli.main import main; main(sys.argv[1:]); "
    "print('torch' in sys.modules)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7, help="runs of each lint process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "resnet.json"
        save_manifest(build_manifest(example_model("resnet")[0]), manifest)
        commands = {
            NO_MODEL: ["lint", str(RULES)],
            ON_MANIFEST: ["lint", str(RULES), "--manifest", str(manifest)],
            ON_MODEL: ["lint", str(RULES), "--model", MODEL_SPEC],
        }
        loads_torch = {name: _loads_torch(argv) for name, argv in commands.items()}
        times = _process_times(commands, args.rounds)
    _report(args, times, loads_torch)


def _report(args, times: dict[str, dict], loads_torch: dict[str, bool]) -> None:
    base = times[NO_MODEL]
    print_table(
        ["`dsl-compress lint` process", "wall s", "cpu s", "x no-model wall", "loads torch"],
        [
            [name, run["wall"], run["cpu"], run["wall"] / base["wall"], loads_torch[name]]
            for name, run in times.items()
        ],
    )
    saved = times[ON_MODEL]["wall"] - times[ON_MANIFEST]["wall"]
    print(f"{RULES.name} on the bundled ResNet; --manifest saves {saved:.2f} s against --model")
    out = write_results(
        "manifest",
        {
            "args": vars(args),
            "rules": RULES.name,
            "process_seconds": times,
            "loads_torch": loads_torch,
        },
    )
    print(f"wrote {out}")


def _process_times(commands: dict[str, list[str]], rounds: int) -> dict[str, dict]:
    """Median wall and CPU seconds of each process, taking turns round by round so that a noisy
    machine's drift hits every side of a ratio alike; one unmeasured round first."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for round_ in range(rounds + 1):
        for name, argv in commands.items():
            measured = _lint_process(argv)
            if round_:
                runs[name].append(measured)
    return {
        name: {
            "wall": statistics.median(wall for wall, _ in values),
            "cpu": statistics.median(cpu for _, cpu in values),
        }
        for name, values in runs.items()
    }


def _lint_process(argv: list[str]) -> tuple[float, float]:
    command = [sys.executable, "-m", "dsl_compress", *argv, "--format", "concise"]
    before = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: findings
        raise RuntimeError(f"{' '.join(argv)}: lint failed\n{done.stderr}")
    return wall, _children_cpu() - before


def _loads_torch(argv: list[str]) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE, *argv], env=_env(), capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1].lower())


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
