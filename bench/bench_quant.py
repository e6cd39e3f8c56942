"""Simulated-quantization forward time: float, dsl_compress and NNI 3.0's wrapped model, same weights.

int8 per-channel symmetric weights and per-tensor affine inputs on every Linear
(``quant_models.CONFIG_LIST``). Float and quantized forwards are timed interleaved in one
process, so ours/float and NNI/float are each measured against their own float baseline;
NNI/ours compares the two processes, and "NNI/ours by float" is (NNI/float) / (ours/float),
which cancels load that differs between them.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
# Measure the checkout this script lives in, not whichever dsl_compress is installed.
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import dsl_compress as dc  # noqa: E402
from measure import interleaved  # noqa: E402
from measure import print_table, write_results  # noqa: E402
from nni_venv import NniUnavailable, run_nni_job  # noqa: E402
from quant_models import CONFIG_LIST, MODELS, batches, build  # noqa: E402

HEADER = (
    "model",
    "float ms",
    "ours ms",
    "ours/float",
    "NNI ms",
    "NNI/float",
    "NNI/ours",
    "NNI/ours by float",
)


def ours(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Our float and quantized forward times, and the files the NNI job needs."""
    plain = build(name)
    quantized = copy.deepcopy(plain)
    data = batches(name, args.calib)
    dc.quantize(quantized, CONFIG_LIST, calib=data)
    torch.save(plain.state_dict(), workdir / f"{name}.pt")
    x = data[0]
    with torch.no_grad():
        times = interleaved(
            {"float": lambda: plain(x), "quant": lambda: quantized(x)}, args.repeats, args.rounds
        )
        output = quantized(x)
    return {**times, "output": output}


def nni(name: str, args: argparse.Namespace, workdir: Path) -> dict | None:
    """NNI's figures from its own process, or None (with the reason printed) when it cannot run."""
    out = workdir / f"{name}.nni.pt"
    try:
        figures = run_nni_job(
            "quant_forward.py",
            name,
            str(workdir / f"{name}.pt"),
            *map(str, (args.repeats, args.rounds, args.threads, args.calib)),
            str(out),
        )
    except (NniUnavailable, RuntimeError, OSError) as exc:
        print(f"NNI peer skipped for {name}: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return None
    return {**figures, "output": torch.load(out, weights_only=True)}


def measure(name: str, args: argparse.Namespace, workdir: Path, with_nni: bool) -> dict:
    mine = ours(name, args, workdir)
    peer = nni(name, args, workdir) if with_nni else None
    row = {
        "model": name,
        "description": MODELS[name][2],
        "float_ms": mine["float"] * 1e3,
        "ours_ms": mine["quant"] * 1e3,
        "ours_over_float": mine["quant"] / mine["float"],
    }
    if peer is not None:
        row |= {
            "nni_float_ms": peer["float"] * 1e3,
            "nni_ms": peer["quant"] * 1e3,
            "nni_over_float": peer["quant"] / peer["float"],
            "nni_over_ours": peer["quant"] / mine["quant"],
            # Each quantized time over its own process's float time: load drift between the
            # two processes cancels, as both floats run the same torch code on the same weights.
            "nni_over_ours_by_float": (peer["quant"] / peer["float"])
            / (mine["quant"] / mine["float"]),
            "max_abs_diff_vs_nni": (mine["output"] - peer["output"]).abs().max().item(),
            "nni_version": peer["nni"],
        }
    return row


def table_row(row: dict) -> list:
    keys = ("float_ms", "ours_ms", "ours_over_float", "nni_ms", "nni_over_float")
    keys += ("nni_over_ours", "nni_over_ours_by_float")
    return [row["model"], *(row.get(k) for k in keys)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per round")
    parser.add_argument("--rounds", type=int, default=40, help="alternations of float and quant")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, in both processes")
    parser.add_argument("--calib", type=int, default=4, help="calibration batches")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--no-nni", action="store_true", help="skip the NNI 3.0 peer")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, with_nni = [], not args.no_nni
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows.append(measure(name, args, Path(tmp), with_nni))
            with_nni = with_nni and "nni_ms" in rows[-1]  # a peer that failed once is skipped
    print_table(HEADER, [table_row(r) for r in rows])
    settings = {k: getattr(args, k) for k in ("repeats", "rounds", "threads", "calib")}
    path = write_results("quant", {"settings": settings, "config_list": CONFIG_LIST, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
