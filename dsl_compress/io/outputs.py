"""The apply command's output folder: finalized weights, masks, scales, plan and config_list,
written as a whole through the atomic writer."""

from __future__ import annotations

import errno
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

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
from dsl_compress.io.staging import clear_leftovers
from dsl_compress.plan import Plan, tensor_name
from dsl_compress.vocab import Mode, TargetKind

# Where the run-time parts that model.safetensors cannot hold are written.
RUNTIME_FILES = {"quantization": "quant.safetensors", "masks": "masks.safetensors"}
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
) -> list[Path]:
    """Finalize the compression and write OUTPUT_FILES into ``out_dir``, all or nothing.

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
        lambda staging: _write_files(compression, plan, staging, progress),
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
    compression: Compression, plan: Plan, folder: Path, progress: Progress | None
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
    writers = {
        "model.safetensors": lambda p: save_file(plain_state(model), p, {"format": "pt"}),
        "masks.safetensors": lambda p: save_file(masks, p),
        "quant.safetensors": lambda p: _save_quant(quant, p),
        "plan.json": lambda p: _write_json(plan.to_dicts(), p),
        "config_list.json": lambda p: _write_json(config_lists(plan), p),
    }
    written = []
    for done, (name, write) in enumerate(writers.items(), start=2):
        path = folder / name
        _write_one(write, path)
        written.append(path)
        _tick(progress, done, total, name)
    return written


def _write_one(write: Callable[[str], Any], path: Path) -> None:
    """Run one file's writer; safetensors reports a failed write (a full disk) as a
    SafetensorError, made here the OSError it carries so that it is an L105 like any other."""
    try:
        write(str(path))
    except SafetensorError as exc:
        raise _os_error_of(exc, path) from None


def _os_error_of(exc: SafetensorError, path: Path) -> OSError:
    """'... I/O error: No space left on device (os error 28)' → OSError(28, ..., path)."""
    found = re.search(r"os error (\d+)|code: (\d+)", str(exc))
    if found is None:
        return OSError(errno.EIO, str(exc), str(path))
    code = int(found[1] or found[2])
    return OSError(code, os.strerror(code), str(path))


def _save_quant(quant: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str) -> None:
    tensors, metadata = quant_tensors(quant)
    save_file(tensors, path, metadata or None)  # an empty metadata dict writes a bad header


def flat_masks(masks: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{'module.target': bool mask}, contiguous, as masks.safetensors holds them."""
    return {
        tensor_name(module, target): mask.detach().to(torch.bool).cpu().contiguous()
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


def plain_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as safetensors needs it: contiguous, no two keys sharing memory.

    A tensor shared under several keys (tied weights) is copied for every key after the
    first, so the file still loads into a fresh model with ``strict=True``.
    """
    seen: set[int] = set()
    state = {}
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            tensor = tensor.clone()
        seen.add(pointer)
        state[key] = tensor
    return state


def config_lists(plan: Plan) -> dict[str, list[dict]]:
    """config_list.json: NNI config_lists keyed by mode."""
    return {mode.value: plan.to_config_list(mode) for mode in Mode}


def _write_json(data: Any, path: str) -> None:
    """Strict JSON (no bare Infinity or NaN; see io/json_text.py for how they are spelled)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json_text(data))


def _tick(progress: Progress | None, done: int, total: int, label: str) -> None:
    if progress is not None:
        progress(done, total, label)
