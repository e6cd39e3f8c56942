"""The dsl-compress argument parser: every subcommand, its options and its help."""

from __future__ import annotations

import argparse

from dsl_compress import __version__
from dsl_compress.cli.formats import FORMATS

MODEL_HELP = "package.module:callable or path/to/file.py:callable returning an nn.Module"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsl-compress",
        description="Declarative compression rules for PyTorch models (NNI 3.0 compatible).",
    )
    parser.add_argument("--version", action="version", version=f"dsl-compress {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _example(commands)
    _apply(commands)
    _lint(commands)
    _manifest(commands)
    _explain(commands)
    _compile(commands)
    _fmt(commands)
    return parser


def _model_options(command: argparse.ArgumentParser, required: bool) -> None:
    command.add_argument("--model", required=required, metavar="SPEC", help=MODEL_HELP)
    command.add_argument(
        "--weights", metavar="FILE", help="state dict (.safetensors, or .pt read weights-only)"
    )


def _example(commands) -> None:
    commands.add_parser("example", help="prune and quantize the bundled CNN; print what was done")


def _apply(commands) -> None:
    cmd = commands.add_parser("apply", help="compress a model by a rules file; write the results")
    cmd.add_argument("rules", metavar="RULES", help=".rules file, or an NNI config_list .json")
    _model_options(cmd, required=True)
    cmd.add_argument("--calib", metavar="FILE|SPEC", help="calibration batches")
    cmd.add_argument("--out", metavar="DIR", help="output folder (written atomically)")
    cmd.add_argument("--mode", choices=("prune", "quantize", "distill"), help="for a .json RULES")
    cmd.add_argument("--metric", default="l1", help="pruning metric for a .json RULES")
    cmd.add_argument("--dry-run", action="store_true", help="resolve and report; touch nothing")
    cmd.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")


def _lint(commands) -> None:
    cmd = commands.add_parser("lint", help="check rules files (for CI)")
    cmd.add_argument("rules", nargs="+", metavar="RULES")
    target = cmd.add_mutually_exclusive_group()
    target.add_argument("--model", metavar="SPEC", help=MODEL_HELP)
    target.add_argument(
        "--manifest", metavar="FILE", help="a manifest from `dsl-compress manifest`"
    )
    cmd.add_argument("--weights", metavar="FILE", help="state dict for --model")
    cmd.add_argument("--format", choices=FORMATS, default="full")
    cmd.add_argument("--fail-on", choices=("error", "warning"), default="error")


def _manifest(commands) -> None:
    cmd = commands.add_parser("manifest", help="write a model's module names, types and shapes")
    _model_options(cmd, required=True)
    cmd.add_argument("-o", "--output", required=True, metavar="FILE")
    cmd.add_argument(
        "--example-input",
        metavar="FILE|SPEC",
        help="record input/output shapes on the first batch of this calibration data "
        "(a tensor file whose first dim is the list of batches, or module:callable)",
    )


def _explain(commands) -> None:
    cmd = commands.add_parser(
        "explain", help="why each tensor gets its settings, or what a diagnostic code means"
    )
    cmd.add_argument("subject", metavar="RULES|CODE")
    _model_options(cmd, required=False)
    cmd.add_argument(
        "--target",
        metavar="SELECTOR",
        help="only the tensors this selector picks, read as in a statement (layer1.*.conv1.weight)",
    )


def _compile(commands) -> None:
    cmd = commands.add_parser("compile", help="print the NNI config_list, registry or plan")
    cmd.add_argument("rules", metavar="RULES")
    _model_options(cmd, required=False)
    cmd.add_argument("--format", choices=("config-list", "registry", "plan"), default="config-list")
    cmd.add_argument("-o", "--output", metavar="FILE")


def _fmt(commands) -> None:
    cmd = commands.add_parser("fmt", help="format rules files in place")
    cmd.add_argument("rules", nargs="+", metavar="RULES")
    cmd.add_argument("--check", action="store_true", help="exit 1 if a file would change")
    cmd.add_argument("--diff", action="store_true", help="print the changes, write nothing")
