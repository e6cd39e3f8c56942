"""`dsl-compress apply`: rules (or a config_list) resolved against the model, run through the
engine in memory or streamed (alone or under torchrun), the summary printed and the outputs
written; what it takes beyond the model (calibration, a loss, a teacher) is read here."""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dsl_compress.cli.gc_pause import gc_paused
from dsl_compress.cli.messages import ExitStatus, follower, report_warnings, torchrun_job
from dsl_compress.cli.inputs import config_input, model_files, model_from_args, model_of
from dsl_compress.cli.progress import progress_bars
from dsl_compress.diagnostics import fail, raise_errors
from dsl_compress.resolve.ruleset import load
from dsl_compress.tools.lint import is_config_list

if TYPE_CHECKING:
    import torch


def apply_command(args) -> ExitStatus:
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
    inputs = [args.rules, *model_files(args.model), *spec_files(args.weights)]
    inputs += [*spec_files(args.calib), *spec_files(args.loss)]
    inputs += [*model_files(args.teacher or ""), *spec_files(args.teacher_weights)]
    _check_teacher_options(args)
    deploying = _deploying(args)
    stream = args.stream or deploying
    if stream:
        _check_streamable(args)
    elif torchrun_job():
        fail(
            "X806",
            "apply runs in several processes (torchrun) only with --stream",
            subject="torchrun",
            hint="add --stream, or run apply as one process",
        )
    if args.out is not None and not follower():  # "" is the working folder: refused
        report_warnings(check_destination(Path(args.out), args.overwrite, inputs))
    model = model_from_args(args, skeleton=stream)
    locate = list
    if is_config_list(args.rules):
        config = config_input(args)
        plan = config.plan(model, args.metric)
        report_warnings(plan.diagnostics)
        locate = functools.partial(config.located_by_origin, plan)
    else:
        with gc_paused():
            rules = load(args.rules, args.include_root)
            inputs += rules.files
            if args.out is not None:
                refuse_inputs_inside(Path(args.out), rules.files)
            compiled = rules.compile(model)
        _refuse_unmatched(compiled.diagnostics, args.allow_unmatched)
        plan = compiled.plan
    raise_errors(
        locate(locate_in_rules(taylor_input_errors(plan, bool(args.calib), bool(args.loss)), plan))
    )
    report_warnings([*_distill_note(args, plan), *_unused_input_notes(args, plan)])
    loss_fn = load_loss(args.loss) if args.loss else None
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
    report_warnings(result.compression.findings)
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
        report_warnings(runtime_only_warning(plan, Path(args.out)))
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


def _check_teacher_options(args) -> None:
    """--teacher-weights are the weights of --teacher: alone they would be ignored."""
    if args.teacher_weights and not args.teacher:
        fail(
            "X803",
            "--teacher-weights are the weights of a --teacher, and no --teacher was given",
            subject="--teacher-weights",
            hint="add --teacher SPEC (the teacher's model), or leave --teacher-weights out "
            "(the teacher is then the model itself, uncompressed)",
        )


def _unused_input_notes(args, plan) -> list:
    """L109 (a note) for --loss without a taylor entry and --teacher without a distill one."""
    from dsl_compress.diagnostics import Diagnostic, Severity
    from dsl_compress.engine.prune import taylor_entries
    from dsl_compress.vocab import Mode

    unused = []
    if args.loss and not taylor_entries(plan.of_mode(Mode.PRUNE)):
        unused.append(("--loss", "the taylor metric", "metric=taylor"))
    if args.teacher and not plan.of_mode(Mode.DISTILL):
        unused.append(("--teacher", "distillation", "a distill statement"))
    return [
        Diagnostic(
            "L109",
            Severity.INFO,
            f"{option} is used only by {what}, and no rule plans it: it is ignored",
            subject=option,
            hint=f"leave {option} out, or add {rule} to the rules",
        )
        for option, what, rule in unused
    ]


def _teacher(args, plan, model, calibrated: bool) -> torch.nn.Module | None:
    """The teacher of an in-memory apply that distills: --teacher (with --teacher-weights),
    else the model itself as loaded, uncompressed (a copy). Without --calib only the links are
    checked, so a meta skeleton serves (its checkpoint's headers checked, no tensor read)."""
    import copy

    from dsl_compress.io.loading import load_model
    from dsl_compress.vocab import Mode

    if not plan.of_mode(Mode.DISTILL):
        return None
    if args.teacher:
        return model_of(args.teacher, args.teacher_weights, not calibrated, "teacher")
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
    report_warnings(findings)
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
    team = join_team() if torchrun_job() else None
    try:
        with progress_bars() as progress:
            result = stream_apply_job(skeleton, plan, job, progress, team)
    finally:
        leave_team()
    if team is not None and team.rank != 0:
        return ExitStatus.OK  # rank 0 reports the whole run
    report_warnings(result.findings)
    print(summary_table(result))
    if result.distill is not None:
        print(distill_text(result.distill))
    if output is not None and out_format is None:  # compressed-tensors holds input scales
        report_warnings(runtime_only_warning(plan, Path(args.out)))
        print(f"wrote {len(result.written)} files to {args.out}", file=sys.stderr)
    return ExitStatus.OK


def _refuse_unmatched(diagnostics, allowed: bool) -> None:
    """The compile's warnings; then, unless ``allowed``, E221 for every W301 at once, before
    calibration data is read or the engine runs."""
    from dsl_compress.resolve.findings import unmatched_refused

    refused = [] if allowed else unmatched_refused(diagnostics, "--allow-unmatched")
    report_warnings([diag for diag in diagnostics if not refused or diag.code != "W301"])
    raise_errors(refused)
