"""Issue 10's checkpoint benchmark in one run: the plain-torch floor, in-memory `apply`,
`apply --stream` and `--stream` on 2 torchrun ranks, on a checkpoint of `make_checkpoint.py`,
each a fresh process: wall time, peak RSS, peak against the largest tensor and the import floor;
with `--sizes`, the same as the checkpoint grows.

    python bench/bench_checkpoint.py --sizes 0.2                 # generated in a temp folder
    python bench/bench_checkpoint.py --sizes 0.4,1.6,6.4 --variants floor,stream,torchrun
    python bench/bench_checkpoint.py --checkpoint DIR            # an existing checkpoint

A variant whose command line does not exist yet is reported "not available: <its error>".
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from make_checkpoint import (
    DTYPES,
    INDEX,
    SINGLE,
    blocks_for,
    checkpoint_bytes,
    largest_tensor_bytes,
    make_checkpoint,
    parse_bytes,
)
from measure import print_table, write_results
from torch_floor import shard_files

REPO = Path(__file__).resolve().parent.parent
FLOOR_SCRIPT = Path(__file__).resolve().parent / "torch_floor.py"
MIB = 2**20
RANKS = 2

# Runs a module, script or code the way `python -m`/`python FILE`/`python -c` would, then
# appends this process's peak RSS (VmHWM: the peak of this process alone, since its exec) and
# its exit status to a file. A torchrun rank runs it too, so each rank's peak is its own.
WRAPPER = """\
import os, runpy, sys
report, how, what, *rest = sys.argv[1:]
sys.argv = [what, *rest]
status = 1
try:
    if how == "-m":
        runpy.run_module(what, run_name="__main__", alter_sys=True)
    elif how == "-c":
        exec(compile(what, "<-c>", "exec"), {"__name__": "__main__"})
    elif how == "-f":
        runpy.run_path(what, run_name="__main__")
    else:
        raise SystemExit(f"wrapper: unknown mode {how}")
    status = 0
except SystemExit as exc:
    status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    raise
finally:
    with open("/proc/self/status") as lines:
        hwm = next(line.split()[1] for line in lines if line.startswith("VmHWM:"))
    with open(report, "a") as out:
        out.write(f"{os.environ.get('RANK', '-')} {hwm} {status}\\n")
"""

# The import floors: a process that imports what a variant imports and does nothing. The
# plain-torch floor is set against the torch one, the dsl-compress variants against the other.
IMPORTS = {
    "torch": "import torch, safetensors.torch",
    "dsl-compress": "import torch, safetensors.torch, dsl_compress.cli.main, "
    "dsl_compress.io.loading, dsl_compress.tools.apply_job",
}

VARIANTS = {
    "floor": "plain torch floor",
    "apply-file": "apply --weights model.safetensors",
    "apply": "apply --weights index",
    "stream": "apply --stream",
    "torchrun": f"torchrun {RANKS} ranks --stream",
}


@dataclass(frozen=True)
class Checkpoint:
    """A generated or given checkpoint: where its forms are and its sizes."""

    folder: Path
    single: Path | None
    index: Path | None
    total_bytes: int
    largest_bytes: int


@dataclass
class Figures:
    """One process (or torchrun job) measured: time, peaks, or why it did not run."""

    seconds: float = 0.0
    peak_mib: float = 0.0  # the process; for torchrun the agent plus every rank
    rank_peaks_mib: list[float] = field(default_factory=list)
    agent_mib: float = 0.0
    error: str | None = None


def one_line_error(stderr: str) -> str:
    """The first line naming an error (the CLI's diagnostic or argparse's), else the last."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if re.search(r"\berror\b", line, re.IGNORECASE) and "Traceback" not in line:
            return re.sub(r"^\[rank\d+\]:\s*", "", line)
    return lines[-1] if lines else "no output"


class HwmPoller(threading.Thread):
    """Reads a process's VmHWM until it exits: the torchrun agent's own peak (its ranks are
    separate processes, measured by the wrapper)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.kib, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            found = re.search(r"VmHWM:\s+(\d+)", text)
            self.kib = max(self.kib, int(found.group(1))) if found else self.kib


def measure(command: list[str], report: Path, launcher: bool = False) -> Figures:
    """Run ``command`` (which runs the wrapper writing ``report``) and read its figures."""
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    poller = HwmPoller(child.pid)
    if launcher:
        poller.start()
    _, stderr = child.communicate()
    seconds = time.perf_counter() - start
    if launcher:
        poller.done.set()
        poller.join()
    rows = [line.split() for line in report.read_text().splitlines()] if report.exists() else []
    statuses = [int(status) for _, _, status in rows]
    if child.returncode != 0 or not rows or any(statuses):
        return _failed(child.returncode, statuses, stderr.decode(errors="replace"))
    peaks = [int(kib) / 1024 for _, kib, _ in rows]
    agent = poller.kib / 1024 if launcher else 0.0
    return Figures(seconds, agent + sum(peaks), peaks, agent)


def _failed(returncode: int, statuses: list[int], stderr: str) -> Figures:
    """A usage or input error (exit 2 from every process) means the CLI lacks the variant."""
    line = one_line_error(stderr)
    if statuses and all(status == 2 for status in statuses):
        return Figures(error=f"not available: {line}")
    return Figures(error=f"failed (exit {returncode}): {line}")


class Runner:
    """Builds each variant's command on one checkpoint, runs it, removes its output."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.wrapper = work / "wrapper.py"
        self.wrapper.write_text(WRAPPER)
        self.report = work / "peaks.txt"

    def wrapped(self, *args: str) -> list[str]:
        return [sys.executable, str(self.wrapper), str(self.report), *args]

    def import_floors(self) -> dict[str, float]:
        """Peak MiB of each import-only process."""
        floors = {
            name: measure(self.wrapped("-c", code), self.report) for name, code in IMPORTS.items()
        }
        failed = {name: f.error for name, f in floors.items() if f.error}
        if failed:
            raise SystemExit(f"an import floor failed: {failed}")
        return {name: f.peak_mib for name, f in floors.items()}

    def variant(self, name: str, ck: Checkpoint) -> Figures:
        out = self.work / f"out-{name}"
        command = self._command(name, ck, out)
        if isinstance(command, str):
            return Figures(error=command)
        try:
            figures = measure(command, self.report, launcher=name == "torchrun")
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if figures.error:  # the temp folder's path says nothing to the reader
            figures.error = figures.error.replace(f"{self.work}/", "")
        return figures

    def _command(self, name: str, ck: Checkpoint, out: Path) -> list[str] | str:
        weights = ck.single if name == "apply-file" else ck.index
        if name == "floor":
            weights = ck.index or ck.single
        if weights is None:
            form = SINGLE if name == "apply-file" else INDEX
            return f"not available: no {form} in {ck.folder}"
        if name == "floor":
            return self.wrapped("-f", str(FLOOR_SCRIPT), str(weights), "--out", str(out))
        apply = ["-m", "dsl_compress", "apply", str(ck.folder / "rules.rules")]
        apply += ["--model", f"{ck.folder / 'model.py'}:build", "--weights", str(weights)]
        apply += ["--out", str(out)] + (["--stream"] if name in ("stream", "torchrun") else [])
        if name != "torchrun":
            return self.wrapped(*apply)
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launch += ["--nproc-per-node", str(RANKS)]
        return launch + self.wrapped(*apply)[1:]


def generated(folder: Path, size: str, args: argparse.Namespace) -> Checkpoint:
    """The sharded checkpoint and, for the one-file variant, the same tensors in one file."""
    dtype = DTYPES[args.dtype]
    blocks = blocks_for(size, dtype)
    index = make_checkpoint(folder / "sharded", blocks, dtype, args.shard_size)
    single = None
    if "apply-file" in args.variants:
        single = make_checkpoint(folder / "one", blocks, dtype, single_file=True)
    total, largest = checkpoint_bytes(blocks, dtype), largest_tensor_bytes(blocks, dtype)
    return Checkpoint(index.parent, single, index, total, largest)


def given(folder: Path) -> Checkpoint:
    """A folder written by make_checkpoint.py (sharded, one file, or both), its sizes read from
    the safetensors headers."""
    from safetensors import safe_open

    index, single = folder / INDEX, folder / SINGLE
    sizes = []
    for file in shard_files(folder):
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                sizes.append(math.prod(piece.get_shape()) * _itemsize(piece.get_dtype()))
    return Checkpoint(
        folder,
        single if single.exists() else None,
        index if index.exists() else None,
        sum(sizes),
        max(sizes),
    )


def _itemsize(tag: str) -> int:
    return {"F32": 4, "BF16": 2, "F16": 2, "I64": 8, "BOOL": 1}[tag]


HEADER = [
    "variant",
    "GB",
    "wall s",
    "x floor s",
    "peak MiB",
    "x floor peak",
    "above import MiB",
    "above / largest",
    "above / ckpt",
    "agent+ranks MiB",
]


@dataclass(frozen=True)
class SizeResult:
    """Every variant's figures on one checkpoint."""

    checkpoint: Checkpoint
    figures: dict[str, Figures]

    @property
    def gb(self) -> float:
        return self.checkpoint.total_bytes / 1e9


def table_rows(result: SizeResult, floors: dict[str, float], notes: list[str]) -> list[list]:
    """One row per variant; a variant that did not run gets a numbered note."""
    floor = result.figures.get("floor")
    floor = None if floor is None or floor.error else floor
    rows = []
    for name, f in result.figures.items():
        if f.error:
            notes.append(f.error)
            rows.append([VARIANTS[name], f"{result.gb:.2f}", f"[{len(notes)}]", *[None] * 7])
            continue
        base = floors["torch" if name == "floor" else "dsl-compress"]
        above = max(f.rank_peaks_mib) - base  # per process: the largest rank's
        ranks = "+".join(f"{p:.0f}" for p in [f.agent_mib, *f.rank_peaks_mib])
        rows.append(
            [
                VARIANTS[name],
                f"{result.gb:.2f}",
                f.seconds,
                f.seconds / floor.seconds if floor else None,
                f.peak_mib,
                f.peak_mib / floor.peak_mib if floor else None,
                above,
                above * MIB / result.checkpoint.largest_bytes,
                above * MIB / result.checkpoint.total_bytes,
                ranks if name == "torchrun" else "",
            ]
        )
    return rows


def growth_rows(results: list[SizeResult]) -> list[list[object]]:
    """Per variant: seconds per GB and peak RSS at each size."""
    rows = []
    for name in results[0].figures:
        cells = []
        for result in results:
            f = result.figures[name]
            cells.append(
                "-" if f.error else f"{f.seconds / result.gb:.1f} s/GB, {f.peak_mib:.0f} MiB"
            )
        rows.append([VARIANTS[name], *cells])
    return rows


def run_size(runner: Runner, ck: Checkpoint, variants: list[str]) -> SizeResult:
    figures = {}
    for name in variants:
        f = figures[name] = runner.variant(name, ck)
        shown = f.error or f"{f.seconds:.1f} s, {f.peak_mib:.0f} MiB"
        print(f"  {VARIANTS[name]}: {shown}", file=sys.stderr)
    return SizeResult(ck, figures)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="an existing checkpoint folder")
    parser.add_argument("--sizes", default="0.2", help="GB or block counts, comma-separated")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--shard-size", type=parse_bytes, default="500MB")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=",".join(VARIANTS))
    parser.add_argument("--tmp", type=Path, help="folder for checkpoints and outputs")
    args = parser.parse_args()
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    return args


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench-ckpt-") as tmp:
        runner = Runner(Path(tmp))
        floors = runner.import_floors()
        print(f"import floors (MiB): {floors}", file=sys.stderr)
        results = []
        for size in [None] if args.checkpoint else args.sizes.split(","):
            folder = Path(tmp) / f"ckpt-{size}"
            ck = given(args.checkpoint) if args.checkpoint else generated(folder, size, args)
            print(f"checkpoint {ck.total_bytes / 1e9:.2f} GB in {ck.folder}", file=sys.stderr)
            results.append(run_size(runner, ck, args.variants))
            shutil.rmtree(folder, ignore_errors=True)
    report(results, floors, args)


def report(results: list[SizeResult], floors: dict[str, float], args: argparse.Namespace) -> None:
    print(
        "\nimport floors (imports only, then exit), peak MiB: "
        + ", ".join(f"{k} {v:.0f}" for k, v in floors.items())
    )
    notes: list[str] = []
    rows = [row for result in results for row in table_rows(result, floors, notes)]
    print_table(HEADER, rows)
    for number, note in enumerate(notes, 1):
        print(f"[{number}] {note}")
    if len(results) > 1:
        print()
        print_table(["growth", *[f"{r.gb:.2f} GB" for r in results]], growth_rows(results))
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "import_floors_mib": floors,
        "sizes": [
            {
                "gb": result.gb,
                "checkpoint_bytes": result.checkpoint.total_bytes,
                "largest_tensor_bytes": result.checkpoint.largest_bytes,
                "figures": {name: vars(f) for name, f in result.figures.items()},
            }
            for result in results
        ],
    }
    print(f"wrote {write_results('checkpoint', payload)}")


if __name__ == "__main__":
    main()
