"""The dsl-compress command: each subcommand calls one library verb and maps it to an exit status."""

from __future__ import annotations

import difflib
import enum
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch

from dsl_compress.api import run_plan
from dsl_compress.cli_args import build_parser
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
_CODE = re.compile(r"[A-Z]\d{3}$")


class ExitStatus(enum.IntEnum):
    """0 clean, 1 findings, 2 usage or input error."""

    OK = 0
    FINDINGS = 1
    ERROR = 2


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
    args = build_parser().parse_args(argv)
    handler: Callable = COMMANDS[args.command]
    try:
        return int(handler(args))
    except CompressionError as exc:
        print(paint(str(exc)), file=sys.stderr)
        return ExitStatus.ERROR


def paint(text: str) -> str:
    """Colour severities on a terminal, unless NO_COLOR is set."""
    if "NO_COLOR" in os.environ or not sys.stderr.isatty():
        return text
    colours = {"error": "31", "warning": "33", "info": "36"}
    return re.sub(
        r"\b(error|warning|info)\[", lambda m: f"\033[1;{colours[m[1]]}m{m[1]}\033[0m[", text
    )


def _example(args) -> ExitStatus:
    print(run_example())
    return ExitStatus.OK


def _fmt(args) -> ExitStatus:
    from dsl_compress.formatter import format_rules
    from dsl_compress.ruleset import read_rules

    changed = []
    for name in args.rules:
        path = Path(name)
        before = read_rules(path) if path.is_file() else _missing(name)
        after = format_rules(before, name)
        if after == before:
            continue
        changed.append(name)
        if args.diff:
            diff = difflib.unified_diff(
                before.splitlines(True), after.splitlines(True), name, f"{name} (formatted)"
            )
            sys.stdout.write("".join(diff))
        elif not args.check:
            path.write_text(after, encoding="utf-8")
    verb = "would reformat" if (args.check or args.diff) else "reformatted"
    for name in changed:
        print(f"{verb} {name}", file=sys.stderr)
    if (args.check or args.diff) and changed:
        return ExitStatus.FINDINGS
    return ExitStatus.OK


def _missing(name: str) -> str:
    from dsl_compress.ruleset import load

    load(name)  # raises the located "no rules file" diagnostic
    raise AssertionError("unreachable")


def _compile(args) -> ExitStatus:
    from dsl_compress.ruleset import load

    model = _model(args) if args.model else None
    if args.format == "plan" and model is None:
        print("compile --format plan needs --model SPEC", file=sys.stderr)
        return ExitStatus.ERROR
    compiled = load(args.rules).compile(model)
    payload = {
        "config-list": compiled.config_list,
        "registry": compiled.registry,
        "plan": compiled.plan.to_dicts() if compiled.plan is not None else None,
    }[args.format]
    _emit(json.dumps(payload, indent=2) + "\n", args.output)
    return ExitStatus.OK


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def _explain(args) -> ExitStatus:
    if _CODE.match(args.subject):
        from dsl_compress.report_formats import explain_code

        print(explain_code(args.subject))
        return ExitStatus.OK
    from dsl_compress.explain import explain, render_explanations
    from dsl_compress.ruleset import load

    if not args.model:
        print("explain RULES needs --model SPEC (explain CODE needs none)", file=sys.stderr)
        return ExitStatus.ERROR
    sys.stdout.write(render_explanations(explain(load(args.subject), _model(args), args.target)))
    return ExitStatus.OK


def _model(args) -> torch.nn.Module:
    from dsl_compress.loading import load_model, load_weights

    model = load_model(args.model)
    if getattr(args, "weights", None):
        load_weights(model, args.weights)
    return model


COMMANDS: dict[str, Callable] = {
    "example": _example,
    "fmt": _fmt,
    "compile": _compile,
    "explain": _explain,
}


if __name__ == "__main__":
    sys.exit(main())
