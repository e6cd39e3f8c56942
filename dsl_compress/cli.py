"""The dsl-compress command line: argument parsing and exit status, calling library verbs only."""

from __future__ import annotations

import argparse
import enum
import sys
from typing import Sequence

import torch

from dsl_compress import __version__
from dsl_compress.api import run_plan
from dsl_compress.diagnostics import CompressionError
from dsl_compress.modes import Mode
from dsl_compress.models import example_model
from dsl_compress.plan import Plan
from dsl_compress.report import summary_table
from dsl_compress.resolve import build_plan

# The bundled example: prune the convs channel-wise, align each BN (weight and bias) to its
# conv through a chain, and quantize the head with int8 weights and activations.
EXAMPLE_PRUNE = [
    {"op_types": ["Conv2d"], "sparse_ratio": 0.5, "granularity": "out_channel"},
    *(
        {
            "op_names": [f"bn{i}"],
            "target_settings": {
                "weight": {
                    "align": {"module_name": f"conv{i}", "target_name": "weight", "dims": [0]}
                }
            },
        }
        for i in (1, 2, 3)
    ),
]
EXAMPLE_QUANTIZE = [
    {
        "op_types": ["Linear"],
        "quant_dtype": "int8",
        "quant_scheme": "symmetric",
        "target_names": ["weight", "_input_", "_output_"],
    }
]


class ExitStatus(enum.IntEnum):
    """0 clean, 1 findings, 2 usage or input error."""

    OK = 0
    FINDINGS = 1
    ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsl-compress", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dsl-compress {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    example = commands.add_parser(
        "example", help="prune and quantize the bundled CNN and print what was done"
    )
    example.set_defaults(command="example")
    return parser


def run_example() -> str:
    """Prune + quantize the bundled CNN with the example config lists; return the summary."""
    model, batch = example_model("cnn")
    plan = Plan(
        build_plan(model, EXAMPLE_PRUNE, Mode.PRUNE, metric="l1").entries
        + build_plan(model, EXAMPLE_QUANTIZE, Mode.QUANTIZE).entries
    )
    compression = run_plan(model, plan, calib=[batch])
    with torch.no_grad():
        compression.model(batch)
    table = summary_table(compression)
    compression.finalize()
    return table


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "example":
            print(run_example())
    except CompressionError as exc:
        print(exc, file=sys.stderr)
        return ExitStatus.ERROR
    return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
