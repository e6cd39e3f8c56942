"""The dsl-compress argument parser: every subcommand, its options and its help."""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from dsl_compress import __version__
from dsl_compress.cli.formats import FORMATS
from dsl_compress.vocab import DEFAULT_METRIC, DEPLOY_TARGETS, METRIC_NAMES, OUTPUT_FORMATS, Mode

MODES = tuple(m.value for m in Mode)
RULES_HELP = ".rules file, or an NNI config_list .json"

MODEL_HELP = (
    "package.module:callable or path/to/file.py:callable returning an nn.Module, or hf:DIR "
    "(a local Hugging Face model folder; needs transformers)"
)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line; an argument a subcommand does not take is that subcommand's
    usage error (argparse reports leftovers with the top-level usage, which lists none of them)."""
    parser, commands = build_parser()
    args, leftover = parser.parse_known_args(argv)
    if leftover:
        commands[args.command].error(f"unrecognized arguments: {' '.join(leftover)}")
    empty = _first_empty(args)
    if empty:
        commands[args.command].error(f"argument {empty}: expected a value, not an empty string")
    return args


# The positional arguments, by the name the usage shows them under.
_POSITIONALS = {"rules": "RULES", "subject": "RULES|CODE", "source": "SOURCE"}


def _first_empty(args: argparse.Namespace) -> str | None:
    """The first argument given as an empty string: an unset shell variable (--weights "$W",
    --manifest "$M") must not read as the option left out, which would lint without the model
    or compress the model's initial weights."""
    for name, value in vars(args).items():
        if "" in (value if isinstance(value, list) else [value]):
            return _POSITIONALS.get(name, "--" + name.replace("_", "-"))
    return None


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's parser by name."""
    parser = argparse.ArgumentParser(
        prog="dsl-compress",
        description="Declarative compression rules for PyTorch models (NNI 3.0 compatible).",
    )
    parser.add_argument("--version", action="version", version=f"dsl-compress {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    built = {
        name: add(commands)
        for name, add in (
            ("example", _example),
            ("apply", _apply),
            ("lint", _lint),
            ("manifest", _manifest),
            ("explain", _explain),
            ("compile", _compile),
            ("fmt", _fmt),
            ("lsp", _lsp),
            ("convert", _convert),
        )
    }
    return parser, built


def _model_options(command: argparse.ArgumentParser, required: bool) -> None:
    command.add_argument("--model", required=required, metavar="SPEC", help=MODEL_HELP)
    _weights_option(command)


def _weights_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--weights",
        metavar="PATH",
        help="the weights: a .safetensors file, a sharded index (*.safetensors.index.json), a "
        "folder holding either, or a .pt/.pth state dict (read weights-only); with hf:DIR, "
        "in place of the folder's own",
    )


def _model_or_manifest(command: argparse.ArgumentParser) -> None:
    """--model SPEC or --manifest FILE: what rules are resolved against, without running it."""
    target = command.add_mutually_exclusive_group()
    target.add_argument("--model", metavar="SPEC", help=MODEL_HELP)
    target.add_argument(
        "--manifest", metavar="FILE", help="a manifest from `dsl-compress manifest`"
    )
    _weights_option(command)


def _include_root_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--include-root",
        metavar="DIR",
        help="the folder includes may read under (default: the rules file's own folder)",
    )


def _config_list_options(command: argparse.ArgumentParser) -> None:
    """How an NNI config_list .json input is read: the kind of a plain list, the pruning metric."""
    command.add_argument("--mode", choices=MODES, help="the kind of a .json config_list")
    command.add_argument(
        "--metric",
        choices=METRIC_NAMES,
        help=f"pruning metric for a .json (default {DEFAULT_METRIC})",
    )


def _example(commands) -> argparse.ArgumentParser:
    return commands.add_parser(
        "example", help="prune and quantize the bundled CNN; print what was done"
    )


def _apply(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser("apply", help="compress a model by a rules file; write the results")
    cmd.add_argument("rules", metavar="RULES", help=RULES_HELP)
    _model_options(cmd, required=True)
    cmd.add_argument("--calib", metavar="FILE|SPEC", help="calibration batches")
    cmd.add_argument(
        "--loss",
        metavar="SPEC",
        help="the taylor metric's loss: package.module:callable or path/file.py:callable, "
        "called as loss_fn(model, batch) and returning a scalar tensor (needs --calib)",
    )
    cmd.add_argument(
        "--teacher",
        metavar="SPEC",
        help="the model distill statements compare against (as --model; default: the model "
        "itself, uncompressed); with --calib apply reports the distillation loss",
    )
    cmd.add_argument(
        "--teacher-weights",
        metavar="PATH",
        help="the teacher's weights (as --weights; an hf: teacher has its own)",
    )
    destination = cmd.add_mutually_exclusive_group(required=True)
    destination.add_argument("--out", metavar="DIR", help="output folder (written atomically)")
    destination.add_argument(
        "--dry-run", action="store_true", help="resolve and report; touch nothing"
    )
    _config_list_options(cmd)
    cmd.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    cmd.add_argument(
        "--max-shard-size",
        metavar="SIZE",
        help="write model, masks and quant files holding more than SIZE (5GB, 500MB, 2GiB, "
        "bytes) as Hugging Face shards with an index; a larger tensor gets a shard of its own",
    )
    cmd.add_argument(
        "--stream",
        action="store_true",
        help="never hold the model: build it on the meta device and read, compress, write and "
        "drop one tensor at a time from the --weights checkpoint (or the hf: folder's); the "
        "same output, bit for bit, in memory for the largest few tensors",
    )
    cmd.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default="dsl-compress",
        help="dsl-compress: the finalized model, masks, scales and plan (any plan); "
        "compressed-tensors: a Hugging Face folder transformers and vLLM load (needs --model "
        "hf:DIR; streams as --stream does; masks and plan in its dsl-compress/ folder)",
    )
    cmd.add_argument(
        "--target",
        choices=DEPLOY_TARGETS,
        help="with --format compressed-tensors: refuse, before any work, a plan this server "
        "cannot load (its checks are warnings otherwise)",
    )
    cmd.add_argument(
        "--allow-unmatched",
        action="store_true",
        help="apply although a statement matches nothing (W301 a warning, not error E221)",
    )
    _include_root_option(cmd)
    return cmd


def _rules_input_options(cmd: argparse.ArgumentParser) -> None:
    """What a command that reads rules or a config_list takes besides the file itself."""
    _model_or_manifest(cmd)
    _config_list_options(cmd)
    _include_root_option(cmd)


def _lint(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser("lint", help="check rules files or NNI config_lists (for CI)")
    cmd.add_argument("rules", nargs="+", metavar="RULES", help=RULES_HELP)
    _rules_input_options(cmd)
    cmd.add_argument("--format", choices=FORMATS, default="full")
    cmd.add_argument(
        "--target",
        choices=DEPLOY_TARGETS,
        help="with --model or --manifest, also report what this server refuses in a "
        "compressed-tensors export of the plan (F101, V101-V104)",
    )
    cmd.add_argument(
        "--fail-on",
        choices=("error", "warning"),
        default="warning",
        help="the least severity that exits 1 (default warning; info notes never fail)",
    )
    fixing = cmd.add_mutually_exclusive_group()
    fixing.add_argument(
        "--fix",
        action="store_true",
        help="apply the fixes of findings marked [*] (an unambiguous did-you-mean) to the files, "
        "included files too, each written atomically; then report what is left (the exit "
        "status is that of what is left)",
    )
    fixing.add_argument(
        "--diff",
        action="store_true",
        help="print the changes --fix would make as unified diffs and write nothing; exit 1 "
        "if there is anything to fix or any finding would be left",
    )
    _jobs_option(cmd, "lint (without a model)")
    return cmd


def _manifest(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser("manifest", help="write a model's module names, types and shapes")
    _model_options(cmd, required=True)
    cmd.add_argument("-o", "--output", required=True, metavar="FILE")
    cmd.add_argument(
        "--example-input",
        metavar="FILE|SPEC",
        help="record input/output shapes on the first batch of this calibration data "
        "(a tensor file whose first dim is the list of batches, or module:callable)",
    )
    return cmd


def _explain(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "explain", help="why each tensor gets its settings, or what a diagnostic code means"
    )
    cmd.add_argument("subject", metavar="RULES|CODE", help=f"{RULES_HELP}, or a diagnostic code")
    _rules_input_options(cmd)
    cmd.add_argument(
        "--target",
        metavar="SELECTOR",
        help="only the tensors this selector picks, read as in a statement (layer1.*.conv1.weight)",
    )
    return cmd


def _compile(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser("compile", help="print the NNI config_list, registry or plan")
    cmd.add_argument("rules", metavar="RULES", help=RULES_HELP)
    _rules_input_options(cmd)
    cmd.add_argument("--format", choices=("config-list", "registry", "plan"), default="config-list")
    cmd.add_argument("-o", "--output", metavar="FILE")
    return cmd


def _fmt(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser("fmt", help="format .rules files in place (a .json is skipped)")
    cmd.add_argument("rules", nargs="+", metavar="RULES")
    cmd.add_argument("--check", action="store_true", help="exit 1 if a file would change")
    cmd.add_argument("--diff", action="store_true", help="print the changes, write nothing")
    _jobs_option(cmd, "format")
    return cmd


def _jobs_option(cmd: argparse.ArgumentParser, verb: str) -> None:
    cmd.add_argument(
        "--jobs",
        type=_positive_count,
        default=_default_jobs(),
        metavar="N",
        help=f"processes that {verb} a file of a megabyte or more, a piece each "
        f"(default: the CPUs this process may use, at most {MAX_DEFAULT_JOBS})",
    )


def _positive_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return count


# Each worker holds its own interpreter and a piece's syntax (40-60 MB); past a few, the
# command's own reading and splitting of the file bounds the gain, not the CPUs.
MAX_DEFAULT_JOBS = 8


def _default_jobs() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_JOBS))


def _lsp(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "lsp", help="the language server for editors, over stdio (needs dsl-compress[lsp])"
    )
    cmd.add_argument(
        "--manifest",
        metavar="FILE",
        help="check every file against this manifest (default: the one a dsl-compress.toml or "
        "[tool.dsl-compress] in pyproject.toml names, searched upwards from each file)",
    )
    cmd.add_argument(
        "--debounce",
        type=float,
        default=0.3,
        metavar="SECONDS",
        help="the pause after an edit before its file is checked (default 0.3)",
    )
    return cmd


def _convert(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "convert", help="write settings made for NNI (or another tool) as .rules"
    )
    cmd.add_argument("source", metavar="SOURCE", help="an NNI config_list .json (or recipe)")
    cmd.add_argument(
        "--from",
        dest="source_tool",
        choices=("nni", "llmcompressor", "modelopt"),
        help="the tool SOURCE was written for (default: guessed from the file)",
    )
    cmd.add_argument("--mode", choices=MODES, help="the kind of a plain NNI config_list")
    _model_or_manifest(cmd)
    cmd.add_argument("-o", "--output", required=True, metavar="OUT.rules")
    return cmd
