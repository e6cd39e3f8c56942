"""The one engine: installs masks and simulated quantization on a model, and owns their lifecycle."""

from __future__ import annotations

import contextlib
import enum
from typing import Any, Iterator, Mapping

import torch
from torch.nn.utils import parametrize

from dsl_compress.diagnostics import Diagnostic, emit_warnings, error, fail, raise_errors, warning
from dsl_compress.engine.distill import DistillTarget, distill_loss, install_capture
from dsl_compress.engine.options import EngineOptions
from dsl_compress.engine.quantize import QuantParams
from dsl_compress.engine.taps import install_tap
from dsl_compress.engine.transforms import TargetTransform
from dsl_compress.plan import Plan, Key
from dsl_compress.vocab import TargetKind, Mode

# The attribute by which a model keeps the compression attached to it alive: a further verb
# finds it there even when the caller dropped the object an earlier verb returned.
_ATTACHED = "_dsl_compress_attached"


class _Attached:
    """Holds a model's attached compression. A copy or pickle of the model is not attached to
    that compression, so it carries an empty holder; the model-compression cycle is collected
    with the model."""

    __slots__ = ("compression",)

    def __init__(self, compression: "Compression | None" = None):
        self.compression = compression

    def __reduce__(self) -> tuple:
        return (_Attached, ())


def attached_compression(model: torch.nn.Module) -> "Compression | None":
    """The compression attached to ``model`` and not yet finalized or restored, if any."""
    holder = model.__dict__.get(_ATTACHED)
    return None if holder is None else holder.compression


def check_not_compressed(model: torch.nn.Module, keys: list[Key]) -> None:
    """A model (or one of its target tensors) may carry only one compression at a time."""
    if attached_compression(model) is not None:
        fail(
            "X801",
            "the model already carries a compression",
            subject=type(model).__name__,
            hint="call finalize() or restore() on it first, then compress again",
        )
    modules = dict(model.named_modules())
    taken = [k for k in keys if parametrize.is_parametrized(modules[k[0]], k[1])]
    raise_errors(
        error(
            "X801",
            f"'{module}.{target}' is already parametrized",
            subject=f"module '{module}' target '{target}'",
            hint="remove the existing parametrization first",
        )
        for module, target in taken
    )


class CompressionState(enum.Enum):
    """Where a compression is in its lifecycle: new -> attached -> finalized or restored."""

    NEW = "new"
    ATTACHED = "attached"
    FINALIZED = "finalized"
    RESTORED = "restored"


class Compression:
    """Masks, quantization and distillation installed on one model, until finalize() or restore().

    Of ``options`` it reads ``fused`` and ``cache_weights``; the masks, quantization
    parameters and distillation targets come computed.

    Verbs compose: a further verb on a model that carries a compression adds its plan to it
    (:meth:`lifted`, :meth:`add`), so one compression holds every mask and quantizer and
    finalize()/restore() act on all of them, exactly as one apply of both plans would. A
    tensor takes at most one mask and one quantizer (:meth:`addition_errors`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        plan: Plan,
        masks: Mapping[Key, torch.Tensor] | None = None,
        quant: Mapping[Key, QuantParams] | None = None,
        distill: tuple[torch.nn.Module, list[DistillTarget]] | None = None,
        options: EngineOptions = EngineOptions(),
    ):
        self.model = model
        self.plan = plan
        self._masks = dict(masks or {})
        self._quant = dict(quant or {})
        self._distill = distill
        self._options = options
        self._parametrized: list[Key] = []
        self._handles: list[Any] = []
        self._orders: dict[str, tuple[list[str], list[str]]] = {}
        # The options of the verb that quantized a tensor (fused, cache_weights), when a later
        # verb added it; tensors not in here use ``options``.
        self._quant_options: dict[Key, EngineOptions] = {}
        self._state = CompressionState.NEW
        # Warnings the engine found in the data (non-finite values, scales at their floor),
        # for callers such as the command that report diagnostics themselves.
        self.findings: list[Diagnostic] = []

    def attach(self) -> "Compression":
        """Install every transform; on any failure the model is left exactly as it was."""
        self._install()
        self._state = CompressionState.ATTACHED
        return self

    def _install(self) -> None:
        check_not_compressed(self.model, self._keys(TargetKind.PARAMETER))
        try:
            self._install_transforms()
            if self._distill is not None:
                teacher, targets = self._distill
                self._handles.extend(install_capture(self.model, teacher, targets))
        except BaseException:
            self._remove(leave_parametrized=False)
            raise
        self.model.__dict__[_ATTACHED] = _Attached(self)

    @property
    def distill_targets(self) -> tuple[torch.nn.Module, list[DistillTarget]] | None:
        """The teacher and the distillation targets whose outputs the capture taps keep."""
        return self._distill

    @property
    def mask_table(self) -> Mapping[Key, torch.Tensor]:
        """{(module, target): bool mask} of every tensor this compression masks (not copies)."""
        return dict(self._masks)

    @property
    def quant_table(self) -> Mapping[Key, QuantParams]:
        """{(module, target): quantization parameters} of every tensor this compression quantizes."""
        return dict(self._quant)

    def addition_errors(self, plan: Plan, distills: bool) -> list[Diagnostic]:
        """X801 for each tensor of ``plan`` that this compression already masks (or quantizes)
        and ``plan`` masks (or quantizes) again, and for a second distillation."""
        found = []
        for entry in plan.entries:
            earlier = self.plan.find(entry.module, entry.target, entry.mode)
            if earlier is not None and entry.mode is not Mode.DISTILL:
                found.append(_second_transform(entry.module, entry.target, entry.mode, earlier))
        if distills and self._distill is not None:
            found.append(
                error(
                    "X801",
                    "the model already distills, through the compression attached earlier",
                    subject="distill",
                    hint="one compression takes one teacher: give every distillation target "
                    "in one call",
                )
            )
        return found

    @contextlib.contextmanager
    def lifted(self) -> Iterator[None]:
        """The model without this compression's transforms (its weights as they were) while a
        further verb resolves and computes against it, as one apply of both plans would; the
        transforms come back on exit with whatever :meth:`add` merged in. On any failure the
        compression comes back as it was."""
        self._require(CompressionState.ATTACHED)
        before = self._contents()
        self._remove(leave_parametrized=False)
        try:
            yield
            self._install()
        except BaseException:
            self._set_contents(before)
            self._install()
            raise

    def add(
        self,
        plan: Plan,
        masks: Mapping[Key, torch.Tensor],
        quant: Mapping[Key, QuantParams],
        distill: tuple[torch.nn.Module, list[DistillTarget]] | None,
        options: EngineOptions,
    ) -> None:
        """Merge what a further verb computed (inside :meth:`lifted`, after
        :meth:`addition_errors` found nothing): installed when ``lifted`` exits."""
        statements = {**self.plan.statements, **plan.statements}
        self.plan = Plan(
            self.plan.entries + plan.entries, self.plan.diagnostics + plan.diagnostics, statements
        )
        self._masks.update(masks)
        self._quant.update(quant)
        self._quant_options.update((key, options) for key in quant)
        self._distill = distill if distill is not None else self._distill

    def _contents(self) -> tuple:
        return (
            self.plan,
            dict(self._masks),
            dict(self._quant),
            self._distill,
            dict(self._quant_options),
        )

    def _set_contents(self, contents: tuple) -> None:
        plan, masks, quant, distill, quant_options = contents
        self.plan, self._masks, self._quant = plan, masks, quant
        self._distill, self._quant_options = distill, quant_options

    def _keys(self, kind: TargetKind | None = None) -> list[Key]:
        keys = list(dict.fromkeys([*self._quant, *self._masks]))
        return [k for k in keys if kind is None or TargetKind.of(k[1]) is kind]

    def _install_transforms(self) -> None:
        modules = dict(self.model.named_modules())
        for key in self._keys():
            module = modules[key[0]]
            self._orders.setdefault(key[0], (list(module._parameters), list(module._buffers)))
            if TargetKind.of(key[1]) is TargetKind.PARAMETER:
                transform = self._transform(key)
                parametrize.register_parametrization(module, key[1], transform, unsafe=True)
                self._parametrized.append(key)
            else:
                self._handles.append(install_tap(module, key[1], self._transform(key)))

    def _transform(self, key: Key) -> TargetTransform:
        entry = self.plan.find(*key, Mode.PRUNE)
        method = entry.get("apply_method", "mul") if entry is not None else "mul"
        options = self._quant_options.get(key, self._options)
        # Only quantized parameters keep their result: a mask alone costs one multiply per
        # forward, less than keeping a float copy of the weight.
        cache = (
            options.cache_weights
            and key in self._quant
            and TargetKind.of(key[1]) is TargetKind.PARAMETER
        )
        quant = self._quant.get(key)
        args = (self._masks.get(key), method, quant, options.fused, cache)
        return TargetTransform(*args)

    def masks(self) -> dict[str, dict[str, torch.Tensor]]:
        """{module: {target: bool mask}} (copies); parameter masks have the full tensor shape."""
        nested: dict[str, dict[str, torch.Tensor]] = {}
        for (module, target), mask in self._masks.items():
            nested.setdefault(module, {})[target] = mask.clone()
        return nested

    def quant_params(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{module: {target: {scale, zero_point, qmin, qmax, quant_dtype, quant_scheme}}};
        scale and zero_point are float32 tensors whatever the model's dtype."""
        nested: dict[str, dict[str, dict[str, Any]]] = {}
        for (module, target), params in self._quant.items():
            nested.setdefault(module, {})[target] = {
                k: v.clone() if isinstance(v, torch.Tensor) else v
                for k, v in params.to_dict().items()
            }
        return nested

    def loss(self) -> torch.Tensor:
        """The distillation loss of the latest student and teacher forward passes."""
        self._require(CompressionState.ATTACHED)
        if self._distill is None:
            fail("D702", "this compression has no distillation targets", subject="loss()")
        return distill_loss(self._distill[1])

    def finalize(self) -> torch.nn.Module:
        """Bake masks and quantization into plain weights and remove every hook.

        Input/output masks and quantization act at run time and cannot be baked into a
        weight: they are removed, with a warning naming them (quant_params() and masks()
        still report them, for export).
        """
        self._require(CompressionState.ATTACHED)
        dropped = [
            f"{m}.{t}" for m, t in self._keys() if TargetKind.of(t) is not TargetKind.PARAMETER
        ]
        if dropped:
            emit_warnings(
                [
                    warning(
                        "X804",
                        f"finalize() removes run-time transforms of {', '.join(dropped)}",
                        subject="finalize()",
                        hint="export them with masks() / quant_params() before deploying",
                    )
                ]
            )
        self._remove(leave_parametrized=True)
        self._state = CompressionState.FINALIZED
        return self.model

    def restore(self) -> torch.nn.Module:
        """Remove everything; the original weights come back bit-identical."""
        self._require(CompressionState.ATTACHED)
        self._remove(leave_parametrized=False)
        self._state = CompressionState.RESTORED
        return self.model

    def _require(self, state: CompressionState) -> None:
        if self._state is not state:
            fail(
                "X802",
                f"the compression is {self._state.value}, so this operation is not available",
                subject="compression",
                hint="create a new compression",
            )

    def _remove(self, leave_parametrized: bool) -> None:
        modules = dict(self.model.named_modules())
        for module_name, target in reversed(self._parametrized):
            module = modules[module_name]
            parametrize.remove_parametrizations(module, target, leave_parametrized)
        for module_name, orders in self._orders.items():
            _reorder(modules[module_name], orders)
        for handle in self._handles:
            handle.remove()
        self._parametrized.clear()
        self._handles.clear()
        self._orders.clear()
        self.model.__dict__.pop(_ATTACHED, None)


def _second_transform(module: str, target: str, mode: Mode, earlier) -> Diagnostic:
    what = "mask" if mode is Mode.PRUNE else "quantizer"
    return error(
        "X801",
        f"'{module}.{target}' already has a {what} from the compression attached earlier "
        f"(set at {earlier.origin})",
        subject=f"module '{module}' target '{target}'",
        hint=f"a tensor takes one mask and one quantizer: leave '{module}.{target}' out of "
        "this call, or restore() the earlier compression and give both settings to one "
        "dc.apply",
    )


def _reorder(module: torch.nn.Module, orders: tuple[list[str], list[str]]) -> None:
    """Put parameters and buffers back in their original order, so state_dict keys match."""
    for table, order in zip((module._parameters, module._buffers), orders):
        items = dict(table)
        table.clear()
        table.update((k, items[k]) for k in [*order, *items] if k in items and k not in table)
