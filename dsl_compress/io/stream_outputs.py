"""A streamed run's output folder: each tensor written to its shard as soon as it is final."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterable

import torch

from dsl_compress.diagnostics import emit_warnings
from dsl_compress.engine.options import Progress
from dsl_compress.engine.quantize import SCALE_DTYPE, QuantParams
from dsl_compress.engine.stream import StreamResult, StreamRun
from dsl_compress.io.atomic import publish_folder
from dsl_compress.io.outputs import check_destination, write_plan_files
from dsl_compress.io.shard_writer import ShardedWriter
from dsl_compress.plan import Plan


def write_streamed(
    run: StreamRun,
    plan: Plan,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    max_shard_size: int | None = None,
    progress: Progress | None = None,
    inputs: Iterable[str | Path] = (),
) -> tuple[list[Path], StreamResult]:
    """Run ``run`` and write the same files an in-memory apply writes (model, masks, quant,
    plan.json, config_list.json; each safetensors output sharded above ``max_shard_size``),
    all or nothing, exactly as :func:`dsl_compress.io.outputs.write_outputs` places them."""
    out = Path(out_dir)
    emit_warnings(check_destination(out, overwrite, inputs))
    results: list[StreamResult] = []

    def write(staging: Path) -> list[Path]:
        files, result = _write_tensors(run, staging, max_shard_size, progress)
        results.append(result)
        return files + write_plan_files(plan, staging)

    written = publish_folder(out, write, overwrite=overwrite)
    return [out / path.name for path in written], results[0]


def _write_tensors(
    run: StreamRun, folder: Path, max_shard_size: int | None, progress: Progress | None
) -> tuple[list[Path], StreamResult]:
    layout = run.layout
    quant_metadata = {k: json.dumps(v, sort_keys=True) for k, v in layout.quant_metadata.items()}
    with contextlib.ExitStack() as stack:
        writers = [
            stack.enter_context(ShardedWriter(folder, prefix, tensors, **options))
            for prefix, tensors, options in (
                ("model", layout.model, {"metadata": {"format": "pt"}}),
                ("masks", layout.masks, {}),
                ("quant", layout.quant, {"metadata": quant_metadata or None}),
            )
            for options in [{**options, "max_shard_size": max_shard_size}]
        ]
        result = run.run(_WriterSink(*writers), progress)
        files = [path for writer in writers for path in writer.close()]
    return files, result


class _WriterSink:
    """Hands each final tensor to the writer of its output."""

    def __init__(self, model: ShardedWriter, masks: ShardedWriter, quant: ShardedWriter):
        self._model, self._masks, self._quant = model, masks, quant

    def model(self, name: str, tensor: torch.Tensor) -> None:
        self._model.write(name, tensor)

    def mask(self, name: str, mask: torch.Tensor) -> None:
        self._masks.write(name, mask)

    def quant(self, name: str, params: QuantParams) -> None:
        self._quant.write(f"{name}.scale", params.scale.to(SCALE_DTYPE))
        self._quant.write(f"{name}.zero_point", params.zero_point.to(SCALE_DTYPE))
