"""The inputs a command line names: --model with its weights (--weights, or an hf: folder's
own), as loaded or as a meta skeleton; the stand-in of --manifest; an NNI config_list given as
RULES; the files a spec reads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dsl_compress.cli.messages import report_warnings
from dsl_compress.resolve.config_input import ConfigInput, read_config_input

if TYPE_CHECKING:
    import torch

    from dsl_compress.stand_in import StandInModule

MODE_OPTION_HINT = "give --mode prune|quantize|distill"


def model_from_args(args, skeleton: bool = False) -> torch.nn.Module:
    """The model --model names with its weights (--weights, or an hf: folder's own) loaded; as a
    ``skeleton``, on the meta device with the checkpoint's headers checked and no tensor read."""
    return model_of(args.model, getattr(args, "weights", None), skeleton)


def model_of(
    spec: str, weights: str | None, skeleton: bool = False, role: str = "model"
) -> torch.nn.Module:
    """The model ``spec`` names (--model, --teacher) with ``weights`` (or an hf: folder's own)
    loaded once; as a ``skeleton``, on the meta device with the checkpoint's headers checked."""
    from dsl_compress.io.hf import is_hf_spec
    from dsl_compress.io.loading import check_weights, load_model, load_weights, spec_weights

    weights = spec_weights(spec, weights)
    model = load_model(spec, meta=skeleton or is_hf_spec(spec))
    if weights and skeleton:
        check_weights(model, weights, role)  # its dtype warnings tell of casts never made
    elif weights:
        report_warnings(load_weights(model, weights, role))
    return model


def model_or_manifest(args) -> torch.nn.Module | StandInModule | None:
    """The model to resolve against: --model, the torch-free stand-in of --manifest, or none.
    Resolution reads no weight, so an hf: model stays a skeleton whose checkpoint is checked."""
    if args.model:
        return model_from_args(args, skeleton=args.model.startswith("hf:"))
    if args.manifest:
        from dsl_compress.io.manifest_read import load_manifest, stand_in_model

        return stand_in_model(load_manifest(args.manifest))
    return None


def model_files(spec: str) -> list[Path]:
    """What --model reads: an hf: folder (which may hold its weights), or the spec's files."""
    from dsl_compress.io.hf import hf_folder, is_hf_spec
    from dsl_compress.tools.apply_job import spec_files

    return [hf_folder(spec)] if is_hf_spec(spec) else spec_files(spec)


def config_input(args) -> ConfigInput:
    """The NNI config_list given as RULES (or as explain's SUBJECT), with --mode for a plain list."""
    return read_config_input(
        args.subject if args.command == "explain" else args.rules,
        args.mode,
        mode_hint=MODE_OPTION_HINT,
    )
