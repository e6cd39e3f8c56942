"""The dsl-compress command: each subcommand calls one library verb and maps it to an exit status.

What needs torch (models, the engine, outputs) is imported inside the handlers that need a
model, so `fmt`, `lint` without a model and `explain CODE` start without loading torch.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import dataclasses
import os
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from dsl_compress.cli.args import parse_arguments
from dsl_compress.cli.gc_pause import gc_paused
from dsl_compress.cli.progress import progress_bars
from dsl_compress import __version__
from dsl_compress.diagnostics import (
    CompressionError,
    CompressionWarning,
    fail,
    raise_errors,
    render_all,
)
from dsl_compress.io.json_text import json_text
from dsl_compress.language.format import format_rules
from dsl_compress.tools.lint import LintResult, is_config_list, lint
from dsl_compress.vocab import Mode
from dsl_compress.plan import Plan
from dsl_compress.cli.formats import render
from dsl_compress.tools.code_docs import explain_code
from dsl_compress.resolve.config_input import ConfigInput, read_config_input
from dsl_compress.resolve.nni_export import inexpressible_configs
from dsl_compress.resolve.ruleset import load, read_rules_file

if TYPE_CHECKING:
    import torch

    from dsl_compress.tools.lint_fix import FixOutcome

    from dsl_compress.stand_in import StandInModule

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
MODE_OPTION_HINT = "give --mode prune|quantize|distill"


class ExitStatus(enum.IntEnum):
    """0 clean, 1 findings, 2 usage or input error."""

    OK = 0
    FINDINGS = 1
    ERROR = 2


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
        _print_diagnostics(exc.diagnostics)
        return ExitStatus.ERROR
    except SystemExit:
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


def _print_diagnostics(diagnostics) -> None:
    """Each diagnostic on stderr, located ones with their source excerpt (each file read once)."""
    for diag, text in zip(diagnostics, render_all(diagnostics)):
        print(paint(text if diag.span is not None else _one_line(diag)), file=sys.stderr)


def _collector(command: str):
    """The collector paused for the text commands; apply pauses it only while reading rules,
    so the engine's tensors are collected as usual."""
    return gc_paused() if command in TEXT_COMMANDS else contextlib.nullcontext()


def _one_line(diag) -> str:
    """A failure with no source position (a file, a spec) is one line: what, where, the fix."""
    hint = f" ({diag.hint})" if diag.hint else ""
    where = f"{diag.subject}: " if diag.subject else ""
    return f"{where}{diag.severity.value}[{diag.code}] {diag.message}{hint}"


def paint(text: str, stream=None) -> str:
    """Colour severities when ``stream`` (stderr by default) is a terminal and NO_COLOR is unset."""
    stream = stream or sys.stderr
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return text
    colours = {"error": "31", "warning": "33", "info": "36"}
    return re.sub(
        r"\b(error|warning|info)\[", lambda m: f"\033[1;{colours[m[1]]}m{m[1]}\033[0m[", text
    )


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
            before, after = _formatted(name)
        except CompressionError as exc:
            broken = True
            _print_diagnostics(exc.diagnostics)
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


def _formatted(name: str) -> tuple[str, str]:
    before = read_rules_file(name)
    return before, format_rules(before, name)


def _compile(args) -> ExitStatus:
    model = _model_or_manifest(args)
    if args.format == "plan" and model is None:
        print("compile --format plan needs --model SPEC or --manifest FILE", file=sys.stderr)
        return ExitStatus.ERROR
    if is_config_list(args.rules):
        config = _config_input(args)
        payload = _compiled_config_list(config, model, args.metric)[args.format]
        if args.format == "config-list":  # an NNI export: our extension keys cannot go there
            raise_errors(inexpressible_configs(config))
    else:
        compiled = load(args.rules, args.include_root).compile(model)
        _report_warnings(compiled.diagnostics)
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
    _report_warnings(plan.diagnostics)
    lists = {m.value: plan.to_config_list(m) for m in Mode}
    return {"config-list": lists, "registry": registry, "plan": plan.to_dicts()}


def _config_input(args) -> ConfigInput:
    return read_config_input(
        args.subject if args.command == "explain" else args.rules,
        args.mode,
        mode_hint=MODE_OPTION_HINT,
    )


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
    model = _model_or_manifest(args)
    if model is None:
        print(
            "explain RULES needs --model SPEC or --manifest FILE (explain CODE needs none)",
            file=sys.stderr,
        )
        return ExitStatus.ERROR
    from dsl_compress.tools.explain import explain, render_explanations

    if is_config_list(subject):
        from dsl_compress.tools.explain_config import explain_config_list

        found = explain_config_list(_config_input(args), model, args.metric, args.target)
    else:
        found = explain(load(subject, args.include_root), model, args.target)
    sys.stdout.write(render_explanations(found))
    return ExitStatus.OK


def _model(args, skeleton: bool = False) -> torch.nn.Module:
    """The model --model names with its weights (--weights, or an hf: folder's own) loaded; as a
    ``skeleton``, on the meta device with the checkpoint's headers checked and no tensor read."""
    from dsl_compress.io.hf import is_hf_spec
    from dsl_compress.io.loading import check_weights, load_model, load_weights, spec_weights

    weights = spec_weights(args.model, getattr(args, "weights", None))
    model = load_model(args.model, meta=skeleton or is_hf_spec(args.model))
    if weights and skeleton:
        check_weights(model, weights)  # its dtype warnings tell of casts a skeleton never makes
    elif weights:
        _report_warnings(load_weights(model, weights))
    return model


def _model_or_manifest(args) -> torch.nn.Module | StandInModule | None:
    """The model to resolve against: --model, the torch-free stand-in of --manifest, or none.
    Resolution reads no weight, so an hf: model stays a skeleton whose checkpoint is checked."""
    if args.model:
        return _model(args, skeleton=args.model.startswith("hf:"))
    if args.manifest:
        from dsl_compress.io.manifest_read import load_manifest, stand_in_model

        return stand_in_model(load_manifest(args.manifest))
    return None


def _lint(args) -> ExitStatus:
    model = _model_or_manifest(args)
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
        )

    if args.fix or args.diff:
        from dsl_compress.tools.lint_fix import fix_findings  # only for --fix/--diff

        return _lint_fixing(args, fix_findings(relint))
    return _lint_report(args, relint({}))


def _lint_report(args, result: LintResult) -> ExitStatus:
    text = render(result, args.format)
    if text:
        sys.stdout.write(paint(text, sys.stdout) if args.format == "full" else text)
        if not text.endswith("\n"):
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
    conversion = CONVERTERS[tool](text, str(source), mode, _model_or_manifest(args))
    _print_diagnostics(conversion.notes)
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
    model = _model(args, skeleton=has_weights and not args.example_input)
    example = load_calib(args.example_input)[0] if args.example_input else None
    save_manifest(build_manifest(model, example), args.output)
    return ExitStatus.OK


def _apply(args) -> ExitStatus:
    from dsl_compress.io.outputs import check_destination, refuse_inputs_inside
    from dsl_compress.io.outputs import runtime_only_warning
    from dsl_compress.tools.apply_job import apply_plan_job, spec_files, write_outputs
    from dsl_compress.tools.apply_job import taylor_input_errors
    from dsl_compress.io.loading import load_calib, load_loss
    from dsl_compress.io.shard_writer import parse_shard_size
    from dsl_compress.plan import locate_in_rules
    from dsl_compress.tools.summary import distill_text, summary_table

    shard_size = parse_shard_size(args.max_shard_size) if args.max_shard_size else None
    # Every file the run reads: an --out that holds one would delete it (includes come later).
    inputs = [args.rules, *_model_files(args.model), *spec_files(args.weights)]
    inputs += spec_files(args.calib)
    deploying = _deploying(args)
    stream = args.stream or deploying
    if stream:
        _check_streamable(args)
    elif _torchrun_job():
        fail(
            "X806",
            "apply runs in several processes (torchrun) only with --stream",
            subject="torchrun",
            hint="add --stream, or run apply as one process",
        )
    if args.out and not _follower():
        _report_warnings(check_destination(Path(args.out), args.overwrite, inputs))
    model = _model(args, skeleton=stream)
    locate = list
    if is_config_list(args.rules):
        config = _config_input(args)
        plan = config.plan(model, args.metric)
        _report_warnings(plan.diagnostics)
        locate = functools.partial(config.located_by_origin, plan)
    else:
        with gc_paused():
            rules = load(args.rules, args.include_root)
            inputs += rules.files
            if args.out:
                refuse_inputs_inside(Path(args.out), rules.files)
            compiled = rules.compile(model)
        _refuse_unmatched(compiled.diagnostics, args.allow_unmatched)
        plan = compiled.plan
    raise_errors(
        locate(locate_in_rules(taylor_input_errors(plan, bool(args.calib), bool(args.loss)), plan))
    )
    _report_warnings(_distill_note(args, plan))
    loss_fn = load_loss(args.loss) if args.loss else None
    inputs += [*_model_files(args.teacher or ""), *spec_files(args.teacher_weights)]
    if stream:
        out_format = _compressed_tensors(args, model, plan, locate) if deploying else None
        return _apply_streamed(args, model, plan, inputs, shard_size, out_format, loss_fn)
    calib = load_calib(args.calib) if args.calib else None
    teacher = _teacher(args, plan, model, calib is not None)
    with progress_bars() as progress:
        result = apply_plan_job(
            model,
            plan,
            calib=calib,
            teacher=teacher,
            dry_run=args.dry_run,
            progress=progress,
            loss_fn=loss_fn,
        )
    _report_warnings(result.compression.findings)
    print(summary_table(result))
    if result.distill is not None:
        print(distill_text(result.distill))
    if not args.dry_run:
        with progress_bars() as progress:
            written = write_outputs(
                result,
                args.out,
                overwrite=args.overwrite,
                inputs=inputs,
                progress=progress,
                max_shard_size=shard_size,
            )
        _report_warnings(runtime_only_warning(plan, Path(args.out)))
        print(f"wrote {len(written)} files to {args.out}", file=sys.stderr)
    return ExitStatus.OK


def _distill_note(args, plan) -> list:
    """D704 (a note) for a plan that distills without --calib: its entries are recorded, and
    no loss can be reported."""
    from dsl_compress.diagnostics import Diagnostic, Severity
    from dsl_compress.vocab import Mode

    entries = plan.of_mode(Mode.DISTILL)
    if not entries or args.calib:
        return []
    message = (
        f"{len(entries)} distill target(s) recorded in plan.json and config_list.json; apply "
        "reports their distillation loss only with calibration batches"
    )
    hint = "give --calib FILE|SPEC to see the loss of the compressed model against the teacher"
    return [Diagnostic("D704", Severity.INFO, message, subject="distill", hint=hint)]


def _teacher(args, plan, model, calibrated: bool) -> torch.nn.Module | None:
    """The teacher of an in-memory apply that distills: --teacher (with --teacher-weights),
    else the model itself as loaded, uncompressed (a copy, with --calib; a meta skeleton
    otherwise, which only checks the links)."""
    import copy

    from dsl_compress.io.hf import is_hf_spec
    from dsl_compress.io.loading import load_model, load_weights, spec_weights
    from dsl_compress.vocab import Mode

    if not plan.of_mode(Mode.DISTILL):
        return None
    if args.teacher:
        teacher = load_model(args.teacher)
        weights = spec_weights(args.teacher, args.teacher_weights)
        if weights and not (is_hf_spec(args.teacher) and not args.teacher_weights):
            _report_warnings(load_weights(teacher, weights))
        return teacher
    return copy.deepcopy(model) if calibrated else load_model(args.model, meta=True)


def _stream_teacher(args) -> tuple[torch.nn.Module | None, object]:
    """--teacher for a streamed apply: a meta skeleton with its checkpoint, or a model in
    memory when it has none."""
    from dsl_compress.io.loading import load_model, spec_weights

    if not args.teacher:
        return None, None
    weights = spec_weights(args.teacher, args.teacher_weights)
    return load_model(args.teacher, meta=weights is not None), weights


def _deploying(args) -> bool:
    """--format compressed-tensors (which reads an hf: folder and streams); --target needs it."""
    from dsl_compress.io.hf import is_hf_spec

    if args.format != "compressed-tensors":
        if args.target:
            fail(
                "X803",
                f"--target {args.target} checks a compressed-tensors export",
                subject="--target",
                hint="add --format compressed-tensors, or check the rules with "
                f"`dsl-compress lint RULES --model SPEC --target {args.target}`",
            )
        return False
    if not is_hf_spec(args.model):
        fail(
            "L101",
            f"--format compressed-tensors writes a Hugging Face model folder, built from one; "
            f"'{args.model}' is not an hf: folder",
            subject="--model",
            hint="give --model hf:DIR (a local folder with config.json and its safetensors)",
        )
    return True


def _compressed_tensors(args, skeleton, plan, locate):
    """The compressed-tensors folder layout, after every finding is reported at once (F101;
    vLLM's, errors with --target and warnings otherwise), before any tensor is read;
    ``locate`` places a config_list's findings at their config."""
    from dsl_compress.deploy.checks import deployment_findings
    from dsl_compress.io.ct_folder import compressed_tensors_format
    from dsl_compress.io.hf import hf_folder

    schemes, findings = deployment_findings(plan, skeleton, args.target)
    findings = locate(findings)
    raise_errors(findings)
    _report_warnings(findings)
    return compressed_tensors_format(schemes, skeleton, hf_folder(args.model))


def _check_streamable(args) -> None:
    """--stream reads its weights from a checkpoint."""
    from dsl_compress.io.hf import is_hf_spec

    if not (args.weights or is_hf_spec(args.model)):
        fail(
            "L102",
            "--stream reads the weights from a checkpoint, and none was given",
            subject="--stream",
            hint="give --weights (a .safetensors file, a sharded index or a folder), or "
            "--model hf:DIR",
        )
    if args.weights and Path(args.weights).suffix.lower() in (".pt", ".pth"):
        fail(
            "L102",
            f"--stream reads tensors one at a time from safetensors; '{args.weights}' is a "
            "torch.save file, which can only be read whole",
            subject=str(args.weights),
            hint="convert it once: safetensors.torch.save_file(torch.load(f, weights_only=True)"
            ", 'model.safetensors'), or apply without --stream",
        )


def _apply_streamed(
    args, skeleton, plan, inputs, shard_size, out_format=None, loss_fn=None
) -> ExitStatus:
    from dsl_compress.io.loading import load_calib, spec_weights
    from dsl_compress.io.outputs import runtime_only_warning
    from dsl_compress.io.stream_outputs import StreamedOutput
    from dsl_compress.tools.stream_job import StreamJob, stream_apply_job
    from dsl_compress.tools.team import join_team, leave_team
    from dsl_compress.tools.summary import distill_text, summary_table

    output = None
    if not args.dry_run:
        output = StreamedOutput(Path(args.out), args.overwrite, shard_size, tuple(inputs))
        if out_format is not None:
            output = dataclasses.replace(output, format=out_format)
    weights = spec_weights(args.model, args.weights)
    calib = load_calib(args.calib) if args.calib else None
    teacher, teacher_weights = _stream_teacher(args)
    job = StreamJob(
        weights,
        output,
        calib=calib,
        scales_like_weights=out_format is not None,
        loss_fn=loss_fn,
        teacher=teacher,
        teacher_weights=teacher_weights,
    )
    team = join_team() if _torchrun_job() else None
    try:
        with progress_bars() as progress:
            result = stream_apply_job(skeleton, plan, job, progress, team)
    finally:
        leave_team()
    if team is not None and team.rank != 0:
        return ExitStatus.OK  # rank 0 reports the whole run
    _report_warnings(result.findings)
    print(summary_table(result))
    if result.distill is not None:
        print(distill_text(result.distill))
    if output is not None and out_format is None:  # compressed-tensors holds input scales
        _report_warnings(runtime_only_warning(plan, Path(args.out)))
        print(f"wrote {len(result.written)} files to {args.out}", file=sys.stderr)
    return ExitStatus.OK


def _torchrun_job() -> bool:
    """Whether torchrun (or a launcher setting its variables) started several processes."""
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")


def _follower() -> bool:
    """A process of a torchrun job other than rank 0 (torchrun numbers them in RANK): it
    leaves the output folder, the summary and the warnings to rank 0."""
    return _torchrun_job() and os.environ.get("RANK", "0") != "0"


def _model_files(spec: str) -> list[Path]:
    """What --model reads: an hf: folder (which may hold its weights), or the spec's files."""
    from dsl_compress.io.hf import hf_folder, is_hf_spec
    from dsl_compress.tools.apply_job import spec_files

    return [hf_folder(spec)] if is_hf_spec(spec) else spec_files(spec)


def _refuse_unmatched(diagnostics, allowed: bool) -> None:
    """The compile's warnings; then, unless ``allowed``, E221 for every W301 at once, before
    calibration data is read or the engine runs."""
    from dsl_compress.resolve.findings import unmatched_refused

    refused = [] if allowed else unmatched_refused(diagnostics, "--allow-unmatched")
    _report_warnings([diag for diag in diagnostics if not refused or diag.code != "W301"])
    raise_errors(refused)


def _report_warnings(diagnostics) -> None:
    """Warnings and notes of a compile, on stderr (stdout may carry JSON); a torchrun job's
    rank 0 reports them for all."""
    if _follower():
        return
    _print_diagnostics([diag for diag in diagnostics if diag.severity.value != "error"])


# Commands that only read and write text: they build many long-lived objects and no tensors.
TEXT_COMMANDS = frozenset({"lint", "fmt", "compile", "explain"})
COMMANDS: dict[str, Callable] = {
    "apply": _apply,
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
