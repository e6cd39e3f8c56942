"""The streamed engine run: a plan over tensors read one at a time, each finalized, handed on, dropped."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import torch

from dsl_compress.diagnostics import Diagnostic, fail, raise_errors
from dsl_compress.engine.mask_checks import diagnostics, mask_problems
from dsl_compress.engine.mask_request import MaskRequest
from dsl_compress.engine.masks import MaskPipeline
from dsl_compress.engine.plan_checks import plan_errors
from dsl_compress.engine.prune import request_of
from dsl_compress.engine.calibration import first_shapes
from dsl_compress.engine.onload import onloaded
from dsl_compress.engine.options import LossFn
from dsl_compress.engine.stream_taylor import streamed_taylor_scores
from dsl_compress.engine.stream_distill import (
    StreamStudent,
    StreamTeacher,
    io_transforms,
    streamed_distill_report,
)
from dsl_compress.engine.distill_report import DistillReport
from dsl_compress.engine.taps import install_tap
from dsl_compress.engine.quantize import (
    QuantParams,
    activation_quant_params,
    observed_shapes,
    weight_quant_params,
)
from dsl_compress.engine.stream_data import (
    PlannedTensor,
    Share,
    StreamLayout,
    StreamResult,
    StreamSink,
    by_module,
    hand_mask,
    mask_back,
    planned_quant_metadata,
    planned_scales,
    scale_shape,
    tied_names,
)
from dsl_compress.engine.transforms import (
    CODED_METHODS,
    TargetTransform,
    apply_mask,
    masked_codes,
)
from dsl_compress.plan import Key, Plan, PlanEntry, tensor_name
from dsl_compress.vocab import Mode, TargetKind

Read = Callable[[str], torch.Tensor]


class StreamRun:
    """A weight plan run over a model skeleton (a meta model: names, types and shapes) and a
    reader of its tensors by state-dict name (each in the skeleton's dtype).

    Every error the settings and shapes give is raised on construction, before any tensor is
    read; :attr:`layout` says what :meth:`run` will hand on. :meth:`run` runs the mask groups'
    statistics, then takes each tensor of the state dict in turn (align sources before their
    targets): its mask from the same :class:`MaskPipeline` the in-memory engine uses, its
    scales from the same observer, its final value from the same transform ``finalize()``
    bakes, so a streamed run is bit for bit the in-memory one. At most one tensor's data (and
    its metric, mask and result) is alive at a time, beyond what the groups keep.
    """

    def __init__(
        self,
        skeleton: torch.nn.Module,
        plan: Plan,
        read: Read,
        seed: int = 0,
        scales_like_weights: bool = False,
    ):
        """``scales_like_weights``: each scale rounded to its weight's dtype (an input's to its
        module's weight's) before use, as a format storing them in that dtype needs."""
        raise_errors(plan_errors(skeleton, plan))
        self._scales_like_weights = scales_like_weights
        self._plan = plan
        self._read = _LastRead(read)
        state = skeleton.state_dict(keep_vars=True)
        self._state = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
        self._tied = tied_names(state)
        pruning = plan.of_mode(Mode.PRUNE)
        self._pruning, self._seed = pruning, seed
        self._masked_io = {e.key: e for e in pruning if e.kind is not TargetKind.PARAMETER}
        self._io_masks: dict[Key, torch.Tensor] = {}
        self._scores: dict[Key, torch.Tensor] = {}
        requests = [self._request(entry, None) for entry in pruning]
        raise_errors(diagnostics(mask_problems(requests, shapes_observed=False)))
        self._masks = MaskPipeline(requests)
        quantizing = plan.of_mode(Mode.QUANTIZE)
        self._quantized = {e.key: e for e in quantizing if e.kind is TargetKind.PARAMETER}
        self._observed = [e for e in quantizing if e.kind is not TargetKind.PARAMETER]
        self._observed_params: dict[Key, QuantParams] | None = None
        self._observed_findings: list[Diagnostic] = []
        self._observed_shapes: dict[Key, tuple[int, ...]] | None = None
        self._masks_first = bool(self._observed) and bool(pruning)
        self._calib, self._calib_progress = None, None
        self._mask_written: set[str] = set()
        self._skeleton, self._raw_read = skeleton, read
        self._methods = {e.key: e.get("apply_method", "mul") for e in pruning}
        self._distill: tuple[StreamTeacher, Any] | None = None
        self.distill_report: DistillReport | None = None

    def report_distillation(self, teacher: StreamTeacher, calib) -> None:
        """Have :meth:`run` end with the distillation loss of the plan's distill targets over
        ``calib``: the compressed student (its weights as handed on) against ``teacher``, in
        :attr:`distill_report`. One process only: every mask must be readable back."""
        self._distill = (teacher, calib)

    def calibrate(
        self,
        calib,
        progress: Callable[[int, int, str], None] | None = None,
        loss_fn: LossFn | None = None,
    ) -> None:
        """Observe the input/output targets over the calibration batches (Q602 without any):
        the skeleton runs with each module's tensors read just before its forward and dropped
        after it (:func:`onloaded`), as the in-memory apply observes them on the loaded model.
        The taylor metric's scores come first, from forward and backward passes of
        ``loss_fn(model, batch)`` (:func:`streamed_taylor_scores`); in a distributed run every
        process runs the whole pass (each needs every gradient of the loss). What remains of
        it is one fp32 score file per taylor target, until :meth:`run` makes the target's mask
        (a process drops those of targets it does not own as :meth:`run` starts). Nothing to do
        for a plan of weights alone."""
        self._scores = streamed_taylor_scores(
            self._skeleton, self._pruning, calib, loss_fn, self._raw_read
        )
        if self._scores and not self._masked_io:
            self._masks = MaskPipeline([self._request(e, None) for e in self._pruning])
        if self._masked_io:
            self._mask_inputs_outputs(calib)
        if not self._observed:
            return
        if self._masks_first:
            # NNI observes activations through the weights' masks: run() masks first, then
            # calibrates; here only the shapes are learnt, for the layout's scales.
            with onloaded(self._skeleton, self._raw_read):
                self._observed_shapes = observed_shapes(self._skeleton, self._observed, calib)
            self._calib, self._calib_progress = calib, progress
            return
        self._observe(calib, progress, self._raw_read)

    def _observe(self, calib, progress, read: Read) -> None:
        """Observe the input/output targets, through the input/output masks (run-time taps)."""
        modules = dict(self._skeleton.named_modules())
        handles = [
            install_tap(modules[key[0]], key[1], self._io_transform(key, mask))
            for key, mask in self._io_masks.items()
        ]
        try:
            with onloaded(self._skeleton, read):
                params, found = activation_quant_params(
                    self._skeleton, self._observed, calib, progress, self._observed_scale_dtypes()
                )
        finally:
            for handle in handles:
                handle.remove()
        self._observed_params, self._observed_findings = params, found

    def _observed_scale_dtypes(self) -> dict[Key, torch.dtype]:
        """The dtype each observed target's scale is rounded to: its module's weight's."""
        if not self._scales_like_weights:
            return {}
        weights = {key: self._state.get(f"{key[0]}.weight") for key in self._observed_keys()}
        return {key: found[1] for key, found in weights.items() if found is not None}

    def _observed_keys(self) -> list[Key]:
        return [entry.key for entry in self._observed]

    def _io_transform(self, key: Key, mask: torch.Tensor) -> TargetTransform:
        return TargetTransform(mask, self._methods.get(key, "mul"))

    def _request(self, entry: PlanEntry, shape: tuple[int, ...] | None) -> MaskRequest:
        """A parameter's request reads it when its metric is asked; an input/output's has the
        shape its first calibration batch showed (None before calibration)."""
        name = tensor_name(*entry.key)
        if entry.kind is not TargetKind.PARAMETER:
            return request_of(entry, shape, None, self._scores, self._seed)
        read = functools.partial(self._read, name)
        return request_of(entry, self._state[name][0], read, self._scores, self._seed)

    def _mask_inputs_outputs(self, calib) -> None:
        """Input/output masks: shaped by the first calibration batch, as in memory, then
        computed at once (they are small), each from its source's mask, so the layout knows
        them and calibration can apply them; the weights they need are read for it."""
        modules = dict(self._skeleton.named_modules())
        first = next(iter(calib or ()), None)
        targets = [(modules[e.module], e.target, e.key) for e in self._masked_io.values()]
        with onloaded(self._skeleton, self._raw_read):
            shapes = first_shapes(self._skeleton, targets, [] if first is None else [first])
        requests = [self._request(e, shapes.get(e.key)) for e in self._pruning]
        raise_errors(diagnostics(mask_problems(requests)))
        self._masks = MaskPipeline(requests)
        early = MaskPipeline(requests)
        early.prepare()
        needed = early.sources_of(list(self._masked_io))
        for key in early.order():
            if key in needed:
                mask = early.mask(key)
                self._read.forget()
                if key in self._masked_io:
                    self._io_masks[key] = mask

    @property
    def layout(self) -> StreamLayout:
        """The tensors in the order the in-memory outputs hold them (module by module, as
        ``Compression.masks()`` and ``quant_params()`` nest them), so sharded files match too."""
        model = [PlannedTensor(k, shape, dtype) for k, (shape, dtype) in self._state.items()]
        masks = [
            PlannedTensor(tensor_name(*key), self._mask_shape(key), torch.bool)
            for key in by_module(self._masks.stage_order())
        ]
        quant, metadata = [], {}
        observed = self._observed_layout()
        keys = [e.key for e in self._plan.of_mode(Mode.QUANTIZE)]
        for key in by_module(keys):
            name = tensor_name(*key)
            if key in observed:
                shape, metadata[name] = observed[key]
            else:
                shape = scale_shape(self._quantized[key], self._state[name][0])
                metadata[name] = planned_quant_metadata(self._quantized[key])
            quant += planned_scales(name, shape)
        return StreamLayout(tuple(model), tuple(masks), tuple(quant), metadata)

    def _mask_shape(self, key: Key) -> tuple[int, ...]:
        if key in self._masked_io:
            if key not in self._io_masks:
                fail("X803", "a streamed run was laid out before calibrate()", subject="stream")
            return tuple(self._io_masks[key].shape)
        return self._state[tensor_name(*key)][0]

    def _observed_layout(self) -> dict[Key, tuple[tuple[int, ...], dict[str, object]]]:
        """Each observed target's scale shape and metadata: from its scales once calibrated,
        else (a plan that masks first) from the shape its first batch showed."""
        if self._observed_shapes is not None and self._observed_params is None:
            entries = {e.key: e for e in self._observed}
            return {
                key: (scale_shape(entries[key], shape), planned_quant_metadata(entries[key]))
                for key, shape in self._observed_shapes.items()
            }
        return {
            key: (tuple(params.scale.shape), params.metadata())
            for key, params in self._calibrated().items()
        }

    def _calibrated(self) -> dict[Key, QuantParams]:
        if not self._observed:
            return {}
        if self._observed_params is None and self._observed_shapes is None:
            fail("X803", "a streamed run was laid out or run before calibrate()", subject="stream")
        return self._observed_params or {}

    @property
    def reads_masks_back(self) -> bool:
        """Whether :meth:`run` asks its sink for masks it handed on (the plan observes
        activations through the weights' masks: they are all made before calibration)."""
        return self._masks_first or self._distill is not None

    @property
    def sizes(self) -> dict[str, int]:
        """Each tensor's bytes, in state-dict order; an input/output mask counts as 0 bytes (it
        is computed where its source is)."""
        sizes = {k: math.prod(shape) * dtype.itemsize for k, (shape, dtype) in self._state.items()}
        return {**sizes, **{tensor_name(*key): 0 for key in self._masked_io}}

    @property
    def tied(self) -> dict[str, tuple[str, ...]]:
        """Each name of a tensor held under several names (tied weights), with all its names in
        state-dict order; :meth:`run` hands the tensor on under each."""
        return dict(self._tied)

    @property
    def linked(self) -> list[list[str]]:
        """Tensors whose masks are computed from each other (one process computes each set)."""
        found = [[tensor_name(*key) for key in keys] for keys in self._masks.linked()]
        return found + [list(names) for names in dict.fromkeys(self._tied.values())]

    def run(
        self,
        sink: StreamSink,
        progress: Callable[[int, int, str], None] | None = None,
        share: Share | None = None,
    ) -> StreamResult:
        """Hand every tensor to ``sink`` (the model's, its mask, its scales) as it is final.

        With ``share`` (a distributed run) only the tensors it owns are read and handed on;
        every process must call this, as the global groups' statistics are summed over all.
        """
        owns = None if share is None else (lambda key: share.owns(tensor_name(*key)))
        self._masks.prepare(owns, None if share is None else share.reduce)
        for key in [k for k in self._scores if owns is not None and not owns(k)]:
            del self._scores[key]  # another process masks it
        counts: dict[Key, tuple[int, int]] = {}
        dtypes: dict[Key, str] = {}
        findings: list[Diagnostic] = []
        names = [n for n in self._order() if share is None or share.owns(n)]
        if self._masks_first:
            self._mask_then_observe(sink, counts, share)
        findings.extend(self._observed_findings if share is None or share.owns("") else [])
        for key, params in self._calibrated().items():
            if share is None or share.owns(tensor_name(*key)):
                dtypes[key] = params.qrange.quant_dtype
                sink.quant(tensor_name(*key), params)
        sizes = self.sizes
        total, read = sum(sizes[n] for n in names), 0
        for done, name in enumerate(names, start=1):
            self._one(name, sink, counts, dtypes, findings)
            read += sizes[name]
            if progress is not None:
                progress(done, len(names), f"{_megabytes(read)} of {_megabytes(total)} MB {name}")
        if self._distill is not None:
            self.distill_report = self._report_distillation(sink)
        return StreamResult(counts, dtypes, tuple(findings))

    def _report_distillation(self, sink: StreamSink) -> DistillReport:
        teacher, calib = self._distill
        if teacher.module is None:  # the model itself, uncompressed
            teacher = StreamTeacher(self._skeleton, self._raw_read)
        student = StreamStudent(
            functools.partial(self._compressed_value, sink),
            io_transforms(self._io_masks, self._calibrated(), self._methods),
        )
        entries = self._plan.of_mode(Mode.DISTILL)
        return streamed_distill_report(self._skeleton, entries, calib, student, teacher)

    def _compressed_value(self, sink: StreamSink, name: str) -> torch.Tensor:
        """A tensor as :meth:`run` handed it on (its mask read back, its scales observed
        again from the same read), as the in-memory student computes it in its forward."""
        name = self._compressed_name(name)
        mask = mask_back(sink, name) if self._key_of(name) in self._masks else None
        return self._final(name, self._raw_read(name), mask)[2]

    def _final(self, name: str, raw: torch.Tensor, mask: torch.Tensor | None) -> tuple:
        """A tensor's scales (None unquantized), their findings and its final value: what
        finalize() bakes from ``raw`` through ``mask`` and fake quantization."""
        key = self._key_of(name)
        quant, found = None, []
        if key in self._quantized:
            rounding = raw.dtype if self._scales_like_weights else None
            quant, found = weight_quant_params(self._quantized[key], raw, rounding)
        if mask is None and quant is None:
            return quant, found, raw
        with torch.no_grad():
            return quant, found, TargetTransform(mask, self._methods.get(key, "mul"), quant)(raw)

    def _compressed_name(self, name: str) -> str:
        """The name a tensor is compressed under: of a tied tensor, its one compressed name."""
        names = self._tied.get(name, (name,))
        return next((n for n in names if self._compressed(self._key_of(n))), name)

    def _mask_then_observe(self, sink: StreamSink, counts: dict, share: Share | None) -> None:
        """Every mask first (handed to the sink, which keeps it readable), then calibration
        with each module's weights read through their masks, as NNI observes activations;
        in a distributed run every rank calibrates, once all masks are written."""
        for key in self._masks.order():
            name = tensor_name(*key)
            if share is None or share.owns(name):
                hand_mask(sink, counts, key, self._made_mask(key))
                self._read.forget()
        if share is not None:
            share.reduce(torch.zeros(1))  # every rank's masks are written: a barrier
        masked = {tensor_name(*key) for key in self._masks.order()}

        def read_masked(name: str) -> torch.Tensor:
            tensor = self._raw_read(name)
            if name not in masked:
                return tensor
            method = self._methods.get(self._key_of(name), "mul")
            return apply_mask(tensor, mask_back(sink, name), method)

        self._observe(self._calib, self._calib_progress, read_masked)
        self._mask_written = masked

    def _order(self) -> list[str]:
        """The state dict's names, the masked ones first, align sources before their targets;
        one name of each tied tensor (its others are written with it)."""
        masked = [tensor_name(*key) for key in self._masks.order()]
        order, seen = [], set()
        for name in dict.fromkeys([*masked, *self._state]):
            if name not in seen:
                order.append(name)
                seen.update(self._tied.get(name, (name,)))
        return order

    def _one(self, name: str, sink: StreamSink, counts: dict, dtypes: dict, findings: list):
        """One tensor, under every name it is tied to: the final value of a tied tensor is
        its compressed value under each name, as finalize() leaves a tie."""
        if self._key_of(name) in self._masked_io:
            self._io_mask(name, sink, counts)
            return
        name = self._compressed_name(name)
        key = self._key_of(name)
        mask = self._mask_of(key, name, sink)
        raw = self._read(name)
        quant, found, tensor = self._final(name, raw, mask)
        findings.extend(found)
        if quant is not None:
            dtypes[key] = quant.qrange.quant_dtype
            sink.quant(name, quant)
        if mask is not None and name not in self._mask_written:
            hand_mask(sink, counts, key, mask)
        codes, method = None, self._methods.get(key, "mul")
        if quant is not None and (mask is None or method in CODED_METHODS):
            codes = functools.partial(masked_codes, raw, quant, mask, method)
        for each in self._tied.get(name, (name,)):
            sink.model(each, tensor, codes)
        self._read.forget()

    def _io_mask(self, name: str, sink: StreamSink, counts: dict) -> None:
        """An input/output mask, from the pipeline in its turn (the same as the one computed
        for calibration); it has no weight to write."""
        if name in self._mask_written:
            return
        key = self._key_of(name)
        hand_mask(sink, counts, key, self._masks.mask(key))

    def _mask_of(self, key: Key, name: str, sink: StreamSink) -> torch.Tensor | None:
        if name in self._mask_written:
            return mask_back(sink, name)
        return self._made_mask(key) if key in self._masks else None

    def _made_mask(self, key: Key) -> torch.Tensor:
        """A target's final mask; its taylor score (if any) is needed no more, so dropped."""
        mask = self._masks.mask(key)
        if key in self._scores:  # del, not pop: pop would read a spilled score to return it
            del self._scores[key]
        return mask

    def _compressed(self, key: Key) -> bool:
        return key in self._masks or key in self._quantized

    def _key_of(self, name: str) -> Key:
        module, _, target = name.rpartition(".")
        return (module, target)


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.0f}"


class _LastRead:
    """A reader that keeps the last tensor it read until told to forget it: a tensor's metric,
    scales and final value are then computed from one read."""

    def __init__(self, read: Read):
        self._read = read
        self._last: tuple[str, torch.Tensor] | None = None

    def __call__(self, name: str) -> torch.Tensor:
        if self._last is None or self._last[0] != name:
            self._last = (name, self._read(name))
        return self._last[1]

    def forget(self) -> None:
        self._last = None
