"""The apply command's output folder: finalized weights, masks, scales, plan and config_list,
written as a whole through the atomic writer (tensors one at a time, sharded past a size)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from dsl_compress.diagnostics import (
    CompressionWarning,
    Diagnostic,
    emit_warnings,
    fail,
    warning,
)
from dsl_compress.engine.compression import Compression
from dsl_compress.engine.options import Progress
from dsl_compress.engine.quantize import SCALE_DTYPE
from dsl_compress.io.atomic import published_path, publish_folder
from dsl_compress.io.json_text import json_text
from dsl_compress.io.shard_writer import write_safetensors
from dsl_compress.io.staging import clear_leftovers
from dsl_compress.plan import Plan, tensor_name
from dsl_compress.vocab import Mode, TargetKind

# Where the run-time parts that model.safetensors cannot hold are written.
RUNTIME_FILES = {"quantization": "quant.safetensors", "masks": "masks.safetensors"}
# The distillation loss apply reports (with --calib, for a plan that distills).
DISTILL_FILE = "distill.json"
OUTPUT_FILES = (
    "model.safetensors",
    "masks.safetensors",
    "quant.safetensors",
    "plan.json",
    "config_list.json",
)


def write_outputs(
    compression: Compression,
    plan: Plan,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    inputs: Iterable[str | Path] = (),
    max_shard_size: int | None = None,
    extra_json: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Finalize the compression and write OUTPUT_FILES into ``out_dir``, all or nothing; with
    ``extra_json`` each {file name: data} too (``distill.json``).

    With ``max_shard_size`` (bytes of tensor data) a safetensors file that would hold more is
    written as Hugging Face shards instead: ``model-00001-of-0000N.safetensors``... and
    ``model.safetensors.index.json`` (likewise masks and quant); a larger tensor gets a shard of
    its own. Tensors are written one at a time, straight from the model's memory.

    Files are written to a fresh folder beside ``out_dir`` and moved into place once all
    are written; an existing ``out_dir`` that is not empty is refused (L105) unless
    ``overwrite``, and then replaced as a whole; one that is or holds one of ``inputs`` (the
    files the run read) is always refused. A folder that appears at ``out_dir`` during the
    run is never replaced without ``overwrite`` (L105). On any failure nothing is left at
    ``out_dir`` (an existing one stays as it was) and the temporary folder is removed. A
    symlinked ``out_dir`` stays a link: the folder it points to is written. Staging folders
    of killed runs are cleaned first (L107 warnings say what was done or where they are).
    The JSON files are strict JSON (see io/json_text.py for non-finite numbers); every file
    gets the user's normal mode.
    """
    out = Path(out_dir)
    emit_warnings(check_destination(out, overwrite, inputs))
    written = publish_folder(
        out,
        lambda staging: _write_files(compression, plan, staging, progress, max_shard_size)
        + write_extra_json(extra_json or {}, staging),
        overwrite=overwrite,
    )
    return [out / path.name for path in written]


def runtime_only_warning(plan: Plan, out_dir: Path) -> list[Diagnostic]:
    """X804 once, when the plan masks or quantizes inputs/outputs: model.safetensors cannot hold
    them (finalize() bakes parameters only), so the user must apply them at run time."""
    runtime = [
        e for e in plan.entries if e.kind is not TargetKind.PARAMETER and e.mode is not Mode.DISTILL
    ]
    if not runtime:
        return []
    kinds = sorted({"quantization" if e.mode is Mode.QUANTIZE else "masks" for e in runtime})
    files = " and ".join(RUNTIME_FILES[kind] for kind in kinds)
    names = [tensor_name(e.module, e.target) for e in runtime]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    message = (
        f"input/output {' and '.join(kinds)} of {len(names)} target(s) ({shown}) are not baked "
        "into model.safetensors: they act at run time"
    )
    hint = f"apply it at run time from {files}"
    return [warning("X804", message, subject=str(out_dir / "model.safetensors"), hint=hint)]


def check_destination(
    out: Path, overwrite: bool, inputs: Iterable[str | Path] = ()
) -> list[Diagnostic]:
    """Refuse an output path that cannot be (re)placed, before any work is done; first clean
    the staging folders of killed runs beside it and return the notes saying so (L107)."""
    target = published_path(Path(os.path.abspath(out)))
    if not target.name or target == Path.cwd().resolve() or target in Path.cwd().resolve().parents:
        fail(
            "L105",
            f"output folder '{out}' holds the working folder; it cannot be replaced",
            subject=str(out),
            hint="write to a new folder",
        )
    refuse_inputs_inside(out, inputs)
    leftovers = clear_leftovers(target)  # first: it may put back a folder a killed run set aside
    if target.exists() and not target.is_dir():
        fail("L105", f"output path '{out}' exists and is not a folder", subject=str(out))
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        fail(
            "L105",
            f"output folder '{out}' exists and is not empty",
            subject=str(out),
            hint="choose a new folder or allow overwriting it; nothing was written",
        )
    return leftovers


def refuse_inputs_inside(out: Path, inputs: Iterable[str | Path]) -> None:
    """L105 when ``out`` is, or holds, one of the run's input files: replacing it would delete
    the input (links resolved on both sides)."""
    target = published_path(Path(out))
    for given in inputs:
        source = published_path(Path(given))
        if source == target or target in source.parents:
            fail(
                "L105",
                f"output folder '{out}' holds the input '{given}'; writing it would delete it",
                subject=str(out),
                hint="write to a folder that holds none of the inputs; nothing was written",
            )


def _write_files(
    compression: Compression,
    plan: Plan,
    folder: Path,
    progress: Progress | None,
    max_shard_size: int | None,
) -> list[Path]:
    """Copy masks and scales out, finalize, then write each file (progress counts steps)."""
    total = len(OUTPUT_FILES) + 1
    masks, quant = flat_masks(compression.masks()), compression.quant_params()
    with warnings.catch_warnings():
        # finalize() warns that run-time masks and scales are dropped: they are in the files,
        # and the command says so in its own words (runtime_only_warning).
        warnings.filterwarnings("ignore", r".*\[X804\]", CompressionWarning)
        model = compression.finalize()
    _tick(progress, 1, total, "finalized")

    def tensors(
        prefix: str, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
    ) -> list[Path]:
        return write_safetensors(
            folder, prefix, state, max_shard_size=max_shard_size, metadata=metadata
        )

    quant_state, quant_metadata = quant_tensors(quant)
    # A tensor tied under several keys is written under each, so the file loads strictly.
    writers: dict[str, Callable[[], list[Path]]] = {
        "model.safetensors": lambda: tensors("model", model.state_dict(), {"format": "pt"}),
        "masks.safetensors": lambda: tensors("masks", masks),
        "quant.safetensors": lambda: tensors("quant", quant_state, quant_metadata),
        "plan.json": lambda: _write_json(plan.to_dicts(), folder / "plan.json"),
        "config_list.json": lambda: _write_json(config_lists(plan), folder / "config_list.json"),
    }
    written = []
    for done, (name, write) in enumerate(writers.items(), start=2):
        written += write()
        _tick(progress, done, total, name)
    return written


def flat_masks(masks: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{'module.target': bool mask}, as masks.safetensors holds them."""
    return {
        tensor_name(module, target): mask.detach().to(torch.bool)
        for module, targets in masks.items()
        for target, mask in targets.items()
    }


def quant_tensors(quant: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> tuple[dict, dict]:
    """quant.safetensors content: '<name>.scale' and '<name>.zero_point' tensors, float32
    whatever the model's dtype (zero points hold integers), and metadata mapping each
    '<name>' to its quant_dtype, quant_scheme, qmin and qmax as JSON."""
    tensors: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    for module, targets in quant.items():
        for target, params in targets.items():
            name = tensor_name(module, target)
            for field in ("scale", "zero_point"):
                value = params[field].detach().to(device="cpu", dtype=SCALE_DTYPE)
                tensors[f"{name}.{field}"] = value.contiguous()
            info = {k: v for k, v in params.items() if not isinstance(v, torch.Tensor)}
            metadata[name] = json.dumps(info, sort_keys=True)
    return tensors, metadata


def write_plan_files(plan: Plan, folder: Path) -> list[Path]:
    """plan.json and config_list.json, as every apply (in memory or streamed) writes them."""
    return _write_json(plan.to_dicts(), folder / "plan.json") + _write_json(
        config_lists(plan), folder / "config_list.json"
    )


def write_extra_json(files: Mapping[str, Any], folder: Path) -> list[Path]:
    """Each {file name: data} as a strict JSON file in ``folder``."""
    return [path for name, data in files.items() for path in _write_json(data, folder / name)]


def config_lists(plan: Plan) -> dict[str, list[dict]]:
    """config_list.json: NNI config_lists keyed by mode."""
    return {mode.value: plan.to_config_list(mode) for mode in Mode}


def _write_json(data: Any, path: Path) -> list[Path]:
    """Strict JSON (no bare Infinity or NaN; see io/json_text.py for how they are spelled)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json_text(data))
    return [path]


def _tick(progress: Progress | None, done: int, total: int, label: str) -> None:
    if progress is not None:
        progress(done, total, label)
