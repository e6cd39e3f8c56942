"""A streamed run's output folder: each tensor written to its shard as soon as it is final."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import torch

from dsl_compress.diagnostics import emit_warnings, fail
from dsl_compress.engine.options import Progress
from dsl_compress.engine.quantize import SCALE_DTYPE, QuantParams
from dsl_compress.engine.stream import StreamRun
from dsl_compress.engine.stream_data import PlannedTensor, StreamResult, StreamSink
from dsl_compress.io.atomic import named_for_user, publish_folder, write_error
from dsl_compress.io.outputs import (
    DISTILL_FILE,
    check_destination,
    write_extra_json,
    write_plan_files,
)
from dsl_compress.io.shard_writer import ShardedWriter
from dsl_compress.plan import Plan


class Team(Protocol):
    """The processes of a distributed run, as a streamed apply uses them: this one's rank, an
    object from rank 0 to all, every rank's object to all, and a sum of a tensor over all."""

    rank: int
    world: int

    def broadcast(self, value: Any) -> Any: ...

    def gather(self, value: Any) -> list[Any]: ...

    def reduce(self, tensor: torch.Tensor) -> None: ...


@dataclass(frozen=True)
class TeamShare:
    """One process's share of a distributed run: the tensors its rank owns (see
    ``engine/ranks.assign_ranks``), and the team's sum for the global groups' statistics."""

    owner: Mapping[str, int]
    team: Team

    def owns(self, name: str) -> bool:
        """Whether this rank hands ``name`` on; what is no tensor of the checkpoint (an observed
        input or output, the run's own findings) is rank 0's."""
        return self.owner.get(name, 0) == self.team.rank

    def reduce(self, tensor: torch.Tensor) -> None:
        self.team.reduce(tensor)


def _itself(name: str) -> str:
    return name


@dataclass(frozen=True)
class OutputFile:
    """One safetensors output of a streamed run (``<prefix>.safetensors``, or its shards) in a
    folder ``subfolder`` of the output: its tensors, its header metadata, and the checkpoint
    tensor each written one comes from (whose owner writes it in a distributed run)."""

    prefix: str
    tensors: tuple[PlannedTensor, ...]
    metadata: Mapping[str, str] | None = None
    source: Callable[[str], str] = _itself
    subfolder: str = ""


class StreamFormat(Protocol):
    """A layout of a streamed run's output folder: its safetensors files (laid out before any
    tensor is read), the sink that turns the run's tensors into theirs, and the files written
    last (on rank 0 alone in a distributed run). ``scales_like_weights``: the layout stores
    scales in their weight's dtype, so the run rounds them to it before use."""

    scales_like_weights: bool

    def files(self, run: StreamRun) -> list[OutputFile]: ...

    def sink(self, writers: Mapping[str, ShardedWriter]) -> StreamSink: ...

    def finish(self, plan: Plan, staging: Path) -> list[Path]: ...


class NativeFormat:
    """dsl-compress's own layout, the in-memory apply's: the finalized model, the masks, the
    scales and zero points with their metadata, plan.json and config_list.json."""

    scales_like_weights = False

    def files(self, run: StreamRun) -> list[OutputFile]:
        layout = run.layout
        metadata = {k: json.dumps(v, sort_keys=True) for k, v in layout.quant_metadata.items()}
        return [
            OutputFile("model", layout.model, {"format": "pt"}),
            OutputFile("masks", layout.masks),
            # A scale is '<tensor>.scale' or '<tensor>.zero_point': it goes where its tensor goes.
            OutputFile("quant", layout.quant, metadata or None, _scaled_tensor),
        ]

    def sink(self, writers: Mapping[str, ShardedWriter]) -> StreamSink:
        return _WriterSink(writers["model"], writers["masks"], writers["quant"])

    def finish(self, plan: Plan, staging: Path) -> list[Path]:
        return write_plan_files(plan, staging)


def _scaled_tensor(name: str) -> str:
    return name.rpartition(".")[0]


@dataclass(frozen=True)
class StreamedOutput:
    """Where and how a streamed run writes: the folder, the options of an apply, and the
    layout of the folder (dsl-compress's own by default)."""

    out_dir: Path
    overwrite: bool = False
    max_shard_size: int | None = None
    inputs: tuple[str | Path, ...] = ()
    format: StreamFormat = field(default_factory=NativeFormat)


def write_streamed(
    run: StreamRun,
    plan: Plan,
    output: StreamedOutput,
    progress: Progress | None = None,
    share: TeamShare | None = None,
) -> tuple[list[Path], StreamResult]:
    """Run ``run`` and write the same files an in-memory apply writes (model, masks, quant,
    plan.json, config_list.json; each safetensors output sharded above ``max_shard_size``),
    all or nothing, exactly as :func:`dsl_compress.io.outputs.write_outputs` places them.

    With ``share``, every process of the team calls this: rank 0 checks the destination,
    makes the staging folder and every file (with its header) and tells the others where it
    is; each process writes the tensors it owns into those files; rank 0 gathers what every
    process computed, writes the indexes and plan files, and publishes. The files are those
    one process writes. A process that fails exits non-zero (torchrun then stops the others),
    so nothing is published; the staging folder of a stopped run is cleaned by the next.
    Only rank 0 returns the files and the whole run's result; the others their own result.
    """
    if share is not None and share.team.rank != 0:
        return [], _follow(run, share, output)
    out = output.out_dir
    try:
        emit_warnings(check_destination(out, output.overwrite, output.inputs))
    except BaseException:
        if share is not None:
            share.team.broadcast(None)  # the others stop, with nothing to write
        raise
    results: list[StreamResult] = []

    out_format = output.format
    files = out_format.files(run)

    def write(staging: Path) -> list[Path]:
        with _team_writers(files, staging, output.max_shard_size, share) as (_, writers):
            results.append(run.run(out_format.sink(writers), progress, share))
            written = [path for writer in writers.values() for path in writer.close()]
        if run.distill_report is not None:
            written += write_extra_json({DISTILL_FILE: run.distill_report.as_json()}, staging)
        if share is not None:
            results[:] = share.team.gather(results[0])
        return written + out_format.finish(plan, staging)

    written = publish_folder(out, write, overwrite=output.overwrite)
    if share is not None:
        share.team.broadcast("published")
    return [out / path.name for path in written], merged(results)


def _follow(run: StreamRun, share: TeamShare, output: StreamedOutput) -> StreamResult:
    """A process other than rank 0: write its tensors into the files rank 0 made (a failed
    write is L105, as in one process)."""
    staging, out_format = None, output.format
    try:
        files = out_format.files(run)
        with _team_writers(files, None, output.max_shard_size, share) as (staging, writers):
            result = run.run(out_format.sink(writers), None, share)
            for writer in writers.values():
                writer.close()
    except OSError as exc:
        named = exc if staging is None else named_for_user(exc, staging, output.out_dir)
        raise write_error(output.out_dir, named) from None
    share.team.gather(result)
    share.team.broadcast(None)  # rank 0 has published
    return result


def merged(results: list[StreamResult]) -> StreamResult:
    """One result of the processes' results (each tensor is in one of them)."""
    counts, dtypes, findings = {}, {}, []
    for result in results:
        counts.update(result.mask_counts)
        dtypes.update(result.quant_dtypes)
        findings.extend(result.findings)
    return StreamResult(counts, dtypes, tuple(findings))


@contextlib.contextmanager
def _writers(
    files: list[OutputFile],
    folder: Path,
    max_shard_size: int | None,
    share: TeamShare | None,
    create: bool,
) -> Iterator[dict[str, ShardedWriter]]:
    """The writers of ``files`` in ``folder`` (this process writing what it owns); with
    ``create``, the files are made and given their headers. Every process lays out the same
    files from the same layout and ``max_shard_size``."""
    with contextlib.ExitStack() as stack:
        writers = {}
        for file in files:
            owns = None if share is None else _owner(share, file.source)
            where = folder / file.subfolder
            if create and file.subfolder:
                where.mkdir(exist_ok=True)
            options = {"metadata": file.metadata, "owns": owns, "create": create}
            writer = ShardedWriter(
                where, file.prefix, file.tensors, **options, max_shard_size=max_shard_size
            )
            writers[file.prefix] = stack.enter_context(writer)
        yield writers


def _owner(share: TeamShare, source: Callable[[str], str]) -> Callable[[str], bool]:
    return lambda name: share.owns(source(name))


@contextlib.contextmanager
def _team_writers(
    files: list[OutputFile],
    folder: Path | None,
    max_shard_size: int | None,
    share: TeamShare | None,
) -> Iterator[tuple[Path, dict[str, ShardedWriter]]]:
    """The writers of one folder for every process of a run: rank 0 (or the only process)
    makes the files in ``folder``, then tells the others where it is, and they open them."""
    if share is None or share.team.rank == 0:
        with _writers(files, folder, max_shard_size, share, True) as writers:
            if share is not None:
                share.team.broadcast(str(folder))
            yield folder, writers
        return
    made = share.team.broadcast(None)
    if made is None:
        fail(
            "L105",
            "rank 0 refused the output folder (its message says why); nothing was written",
            subject=f"rank {share.team.rank}",
        )
    with _writers(files, Path(made), max_shard_size, share, False) as writers:
        yield Path(made), writers


@contextlib.contextmanager
def dry_run_sink(run: StreamRun, share: TeamShare | None) -> Iterator[Any]:
    """The sink of a dry run: every tensor computed and dropped, but the masks of a run that
    reads them back (:attr:`StreamRun.reads_masks_back`), which go to a temporary folder
    (removed after, whatever happens) rather than memory, so the peak stays flat; in a
    distributed run rank 0 makes the folder and its files, and every rank writes its own."""
    if not run.reads_masks_back:
        yield _DroppedSink(None)
        return
    lead = share is None or share.team.rank == 0
    folder = Path(tempfile.mkdtemp(prefix="dsl-compress-dry-run-")) if lead else None
    try:
        masks = [file for file in NativeFormat().files(run) if file.prefix == "masks"]
        with _team_writers(masks, folder, None, share) as (_, writers):
            yield _DroppedSink(writers["masks"])
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


class _DroppedSink:
    """Drops every tensor; masks go to ``masks`` (when given) to be read back."""

    def __init__(self, masks: ShardedWriter | None):
        self._masks = masks

    def model(self, name: str, tensor: torch.Tensor, codes=None) -> None:
        del name, tensor, codes

    def mask(self, name: str, mask: torch.Tensor) -> None:
        if self._masks is not None:
            self._masks.write(name, mask)

    def read_mask(self, name: str) -> torch.Tensor:
        if self._masks is None:
            fail("X803", f"a dry run was asked for the mask of {name}, which it did not keep")
        return self._masks.read(name)

    def quant(self, name: str, params: QuantParams) -> None:
        del name, params


class _WriterSink:
    """Hands each final tensor to the writer of its output."""

    def __init__(self, model: ShardedWriter, masks: ShardedWriter, quant: ShardedWriter):
        self._model, self._masks, self._quant = model, masks, quant

    def model(self, name: str, tensor: torch.Tensor, codes=None) -> None:
        del codes  # the model file holds final values
        self._model.write(name, tensor)

    def mask(self, name: str, mask: torch.Tensor) -> None:
        self._masks.write(name, mask)

    def read_mask(self, name: str) -> torch.Tensor:
        return self._masks.read(name)

    def quant(self, name: str, params: QuantParams) -> None:
        self._quant.write(f"{name}.scale", params.scale.to(SCALE_DTYPE))
        self._quant.write(f"{name}.zero_point", params.zero_point.to(SCALE_DTYPE))
