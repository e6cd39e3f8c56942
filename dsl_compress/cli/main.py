"""The dsl-compress command: each subcommand calls one library verb and maps it to an exit status.

What needs torch (models, the engine, outputs) is imported inside the handlers that need a
model, so `fmt`, `lint` without a model and `explain CODE` start without loading torch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from dsl_compress.cli.apply_command import apply_command
from dsl_compress.cli.args import parse_arguments
from dsl_compress.cli.gc_pause import gc_paused
from dsl_compress.cli.messages import ExitStatus, paint, print_diagnostics, report_warnings
from dsl_compress.cli.inputs import (
    MODE_OPTION_HINT,
    config_input,
    model_from_args,
    model_or_manifest,
)
from dsl_compress import __version__
from dsl_compress.diagnostics import CompressionError, CompressionWarning, fail, raise_errors
from dsl_compress.io.json_text import json_text
from dsl_compress.language.format import format_rules
from dsl_compress.tools.lint import LintResult, is_config_list, lint
from dsl_compress.vocab import Mode
from dsl_compress.plan import Plan
from dsl_compress.cli.formats import rendered_parts
from dsl_compress.tools.code_docs import explain_code
from dsl_compress.resolve.config_input import ConfigInput
from dsl_compress.resolve.nni_export import inexpressible_configs
from dsl_compress.resolve.ruleset import load, read_rules_file

if TYPE_CHECKING:
    from dsl_compress.tools.lint_fix import FixOutcome

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


# How the command's user gives the kind of a plain config_list.


def run_example() -> str:
    """Prune + quantize the bundled CNN with the example config lists; return the summary."""
    import torch

    from dsl_compress.api import run_plan
    from dsl_compress.models import example_model
    from dsl_compress.tools.summary import summary_table
    from dsl_compress.resolve.from_config import build_plan

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
    try:
        return _run_command(argv)
    except BrokenPipeError:  # the reader of our output left (`| head`): not a bug to report
        _stop_writing()
        return ExitStatus.ERROR


def _stop_writing() -> None:
    """Point stdout and stderr at the null device, so that the interpreter's last flush does
    not fail again on the closed pipe."""
    null = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(null, stream.fileno())
    os.close(null)


def _run_command(argv: Sequence[str] | None) -> int:
    args = parse_arguments(argv)
    handler: Callable = COMMANDS[args.command]
    try:
        with warnings.catch_warnings(), _collector(args.command):
            # The command prints diagnostics itself; Python's warning text would repeat them.
            warnings.simplefilter("ignore", CompressionWarning)
            return int(handler(args))
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    except CompressionError as exc:
        print_diagnostics(exc.diagnostics)
        return ExitStatus.ERROR
    except (SystemExit, BrokenPipeError):
        raise
    except BaseException as exc:  # the last resort: whatever escaped is a bug, never a traceback
        print(internal_error_line(exc, args.command), file=sys.stderr)
        return ExitStatus.ERROR


def internal_error_line(exc: BaseException, command: str) -> str:
    """One line for an exception no handler expected: what it was and how to report it."""
    what = " ".join(f"{type(exc).__name__}: {exc}".split())
    what = what if len(what) <= 300 else what[:300] + "…"
    return (
        f"error[I901] internal error in 'dsl-compress {command}': {what} (a bug in "
        f"dsl-compress {__version__}, not in your input: please report it as an issue with "
        "the command line and its input files)"
    )


def _collector(command: str):
    """The collector paused for the text commands; apply pauses it only while reading rules,
    so the engine's tensors are collected as usual."""
    return gc_paused() if command in TEXT_COMMANDS else contextlib.nullcontext()


def _example(args) -> ExitStatus:
    print(run_example())
    return ExitStatus.OK


def _fmt(args) -> ExitStatus:
    from dsl_compress.tools.text_diff import text_diff

    changed, broken = [], False
    for name in args.rules:
        if is_config_list(name):
            print(
                f"skipped {name}: fmt formats .rules files only (lint checks a config_list)",
                file=sys.stderr,
            )
            continue
        try:
            before, after = _formatted(name, args.jobs)
        except CompressionError as exc:
            broken = True
            print_diagnostics(exc.diagnostics)
            continue
        if after == before:
            continue
        changed.append(name)
        if args.diff:
            sys.stdout.write(text_diff(before, after, name, "formatted"))
        elif not args.check:
            _write_file(name, after)
        verb = "would reformat" if (args.check or args.diff) else "reformatted"
        print(f"{verb} {name}", file=sys.stderr)
    if broken:
        return ExitStatus.ERROR
    return ExitStatus.FINDINGS if (args.check or args.diff) and changed else ExitStatus.OK


def _formatted(name: str, jobs: int = 1) -> tuple[str, str]:
    before = read_rules_file(name)
    return before, format_rules(before, name, jobs)


def _compile(args) -> ExitStatus:
    model = model_or_manifest(args)
    if args.format == "plan" and model is None:
        print("compile --format plan needs --model SPEC or --manifest FILE", file=sys.stderr)
        return ExitStatus.ERROR
    if is_config_list(args.rules):
        config = config_input(args)
        payload = _compiled_config_list(config, model, args.metric)[args.format]
        if args.format == "config-list":  # an NNI export: our extension keys cannot go there
            raise_errors(inexpressible_configs(config))
    else:
        compiled = load(args.rules, args.include_root).compile(model)
        report_warnings(compiled.diagnostics)
        # Only the format asked for is built: the NNI config_list refuses N:M (E223).
        payload = {
            "config-list": lambda: compiled.config_list,
            "registry": lambda: compiled.registry,
            "plan": lambda: compiled.plan.to_dicts() if compiled.plan is not None else None,
        }[args.format]()
    _emit(json_text(payload), args.output)  # strict JSON: non-finite floats spelled as in plan.json
    return ExitStatus.OK


def _compiled_config_list(config: ConfigInput, model, metric: str | None) -> dict:
    """What compile prints for a config_list: it checked and, with a model, resolved per tensor."""
    registry: dict = {m.value: {} for m in Mode}  # a config_list registers no template
    if model is None:
        raise_errors(config.validate())
        lists = {m.value: config.lists.get(m, []) for m in Mode}
        return {"config-list": lists, "registry": registry, "plan": None}
    plan = config.plan(model, metric)
    report_warnings(plan.diagnostics)
    lists = {m.value: plan.to_config_list(m) for m in Mode}
    return {"config-list": lists, "registry": registry, "plan": plan.to_dicts()}


def _write_file(path: str, text: str) -> None:
    """The file replaced whole or not at all. io.atomic is imported here, not at the top:
    `lint` writes nothing, and the writer's imports (ctypes, socket) add 8 ms to its start."""
    from dsl_compress.io.atomic import write_text_atomically

    write_text_atomically(Path(path), text)


def _emit(text: str, output: str | None) -> None:
    if output:
        _write_file(output, text)
    else:
        sys.stdout.write(text)


def _explain(args) -> ExitStatus:
    subject = args.subject
    if not Path(subject).exists() and not subject.endswith((".rules", ".json")):
        print(explain_code(subject))  # a code (W305, w305) or a code's name
        return ExitStatus.OK
    model = model_or_manifest(args)
    if model is None:
        print(
            "explain RULES needs --model SPEC or --manifest FILE (explain CODE needs none)",
            file=sys.stderr,
        )
        return ExitStatus.ERROR
    from dsl_compress.tools.explain import explain, render_explanations

    if is_config_list(subject):
        from dsl_compress.tools.explain_config import explain_config_list

        found = explain_config_list(config_input(args), model, args.metric, args.target)
    else:
        found = explain(load(subject, args.include_root), model, args.target)
    sys.stdout.write(render_explanations(found))
    return ExitStatus.OK


def _lint(args) -> ExitStatus:
    model = model_or_manifest(args)
    if args.target and model is None:
        fail(
            "X803",
            f"lint --target {args.target} checks a plan, which needs the model",
            subject="--target",
            hint="add --model SPEC (e.g. hf:DIR) or --manifest FILE",
        )

    def relint(texts) -> LintResult:
        return lint(
            args.rules,
            model,
            mode=args.mode,
            metric=args.metric,
            mode_hint=MODE_OPTION_HINT,
            include_root=args.include_root,
            target=args.target,
            texts=texts,
            jobs=args.jobs,
        )

    if args.fix or args.diff:
        from dsl_compress.tools.lint_fix import fix_findings  # only for --fix/--diff

        return _lint_fixing(args, fix_findings(relint))
    return _lint_report(args, relint({}))


def _lint_report(args, result: LintResult) -> ExitStatus:
    last = ""
    for part in rendered_parts(result, args.format):  # json, sarif: a diagnostic at a time
        if part:
            sys.stdout.write(paint(part, sys.stdout) if args.format == "full" else part)
            last = part
    if last and not last.endswith("\n"):
        sys.stdout.write("\n")
    return _lint_status(args, result)


def _lint_fixing(args, outcome: FixOutcome) -> ExitStatus:
    """--fix writes the fixed files and reports what is left; --diff prints the diffs only and
    exits 1 when there is something to fix or a finding would be left (as `fmt --diff`)."""
    fixed = f"{outcome.applied} fix(es) in {len(outcome.files)} file(s)"
    if args.diff:
        sys.stdout.write("".join(f.diff() for f in outcome.files))
        left = len(outcome.left.diagnostics)
        if outcome.files:
            print(f"would apply {fixed}; {left} finding(s) would be left", file=sys.stderr)
        status = _lint_status(args, outcome.left)
        return ExitStatus.FINDINGS if status is ExitStatus.OK and outcome.files else status
    for file in outcome.files:
        file.write()
    if outcome.applied:
        print(f"applied {fixed}", file=sys.stderr)
    return _lint_report(args, outcome.left)


def _lint_status(args, result: LintResult) -> ExitStatus:
    if result.unreadable:
        return ExitStatus.ERROR  # an input that could not be read is not a finding of the rules
    return ExitStatus(result.exit_status(args.fail_on))


def _convert(args) -> ExitStatus:
    """Convert SOURCE to .rules, print every note as lint does, write OUT.rules atomically;
    exit 0 clean, 1 warnings, 2 errors (nothing written then)."""
    from dsl_compress.diagnostics import Severity
    from dsl_compress.tools.convert.sources import CONVERTERS, guess_source

    source = Path(args.source)
    try:
        text = source.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        fail("K105", f"cannot read '{source}': {reason}", subject=str(source))
    tool = args.source_tool or guess_source(text, str(source))
    if tool not in CONVERTERS:
        fail("K105", f"no converter for --from {tool} in this build", subject=str(source))
    mode = Mode(args.mode) if args.mode else None
    conversion = CONVERTERS[tool](text, str(source), mode, model_or_manifest(args))
    print_diagnostics(conversion.notes)
    severities = {note.severity for note in conversion.notes}
    if Severity.ERROR in severities:
        return ExitStatus.ERROR
    _write_file(args.output, conversion.rules_text())
    return ExitStatus.FINDINGS if Severity.WARNING in severities else ExitStatus.OK


def _lsp(args) -> ExitStatus:
    """Serve the language server over stdio until the editor exits; without pygls, say how to
    install it."""
    try:
        from dsl_compress.lsp.server import serve
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("pygls", "lsprotocol"):
            raise
        print(LSP_INSTALL_LINE, file=sys.stderr)
        return ExitStatus.ERROR
    serve(Path(args.manifest) if args.manifest else None, max(args.debounce, 0.0))
    return ExitStatus.OK


LSP_INSTALL_LINE = "dsl-compress lsp needs pygls: pip install 'dsl-compress[lsp]'"


def _manifest(args) -> ExitStatus:
    """Names, types and shapes; with a checkpoint and no example input, from the meta skeleton
    and the checkpoint's headers alone (not one weight is read)."""
    from dsl_compress.io.loading import load_calib
    from dsl_compress.io.manifest import build_manifest, save_manifest

    has_weights = bool(args.weights) or args.model.startswith("hf:")
    model = model_from_args(args, skeleton=has_weights and not args.example_input)
    example = load_calib(args.example_input)[0] if args.example_input else None
    save_manifest(build_manifest(model, example), args.output)
    return ExitStatus.OK


# Commands that only read and write text: they build many long-lived objects and no tensors.
TEXT_COMMANDS = frozenset({"lint", "fmt", "compile", "explain"})
COMMANDS: dict[str, Callable] = {
    "apply": apply_command,
    "lint": _lint,
    "manifest": _manifest,
    "example": _example,
    "fmt": _fmt,
    "compile": _compile,
    "explain": _explain,
    "lsp": _lsp,
    "convert": _convert,
}


if __name__ == "__main__":
    sys.exit(main())
