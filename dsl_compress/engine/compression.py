"""The one engine: installs masks and simulated quantization on a model, and owns their lifecycle."""

from __future__ import annotations

import enum
import weakref
from typing import Any, Mapping

import torch
from torch.nn.utils import parametrize

from dsl_compress.diagnostics import emit_warnings, error, fail, raise_errors, warning
from dsl_compress.engine.distill import DistillTarget, distill_loss, install_capture
from dsl_compress.engine.options import EngineOptions
from dsl_compress.engine.quantize import QuantParams
from dsl_compress.engine.taps import install_tap
from dsl_compress.engine.transforms import TargetTransform
from dsl_compress.plan import Plan, Key
from dsl_compress.vocab import TargetKind, Mode

# Models currently carrying a compression. Both sides are weak: the Compression holds its
# model, so a strong value would keep every compressed model alive forever.
_ACTIVE: "weakref.WeakKeyDictionary[torch.nn.Module, weakref.ref]" = weakref.WeakKeyDictionary()


def check_not_compressed(model: torch.nn.Module, keys: list[Key]) -> None:
    """A model (or one of its target tensors) may carry only one compression at a time."""
    if model in _ACTIVE and _ACTIVE[model]() is not None:
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
        self._state = CompressionState.NEW

    def attach(self) -> "Compression":
        """Install every transform; on any failure the model is left exactly as it was."""
        check_not_compressed(self.model, self._keys(TargetKind.PARAMETER))
        try:
            self._install_transforms()
            if self._distill is not None:
                teacher, targets = self._distill
                self._handles.extend(install_capture(self.model, teacher, targets))
        except BaseException:
            self._remove(leave_parametrized=False)
            raise
        _ACTIVE[self.model] = weakref.ref(self)
        self._state = CompressionState.ATTACHED
        return self

    def _keys(self, kind: TargetKind | None = None) -> list[Key]:
        keys = list(dict.fromkeys([*self._quant, *self._masks]))
        return [k for k in keys if kind is None or TargetKind.of(k[1]) is kind]

    def _install_transforms(self) -> None:
        modules = dict(self.model.named_modules())
        for key in self._keys():
            module = modules[key[0]]
            self._orders.setdefault(key[0], (list(module._parameters), list(module._buffers)))
            transform = self._transform(key)
            if TargetKind.of(key[1]) is TargetKind.PARAMETER:
                parametrize.register_parametrization(module, key[1], transform, unsafe=True)
                self._parametrized.append(key)
            else:
                self._handles.append(install_tap(module, key[1], transform))

    def _transform(self, key: Key) -> TargetTransform:
        entry = self.plan.find(*key, Mode.PRUNE)
        method = entry.get("apply_method", "mul") if entry is not None else "mul"
        # Only quantized parameters keep their result: a mask alone costs one multiply per
        # forward, less than keeping a float copy of the weight.
        cache = (
            self._options.cache_weights
            and key in self._quant
            and TargetKind.of(key[1]) is TargetKind.PARAMETER
        )
        quant = self._quant.get(key)
        return TargetTransform(self._masks.get(key), method, quant, self._options.fused, cache)

    def masks(self) -> dict[str, dict[str, torch.Tensor]]:
        """{module: {target: bool mask}} (copies); parameter masks have the full tensor shape."""
        nested: dict[str, dict[str, torch.Tensor]] = {}
        for (module, target), mask in self._masks.items():
            nested.setdefault(module, {})[target] = mask.clone()
        return nested

    def quant_params(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{module: {target: {scale, zero_point, qmin, qmax, quant_dtype, quant_scheme}}}."""
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
        _ACTIVE.pop(self.model, None)


def _reorder(module: torch.nn.Module, orders: tuple[list[str], list[str]]) -> None:
    """Put parameters and buffers back in their original order, so state_dict keys match."""
    for table, order in zip((module._parameters, module._buffers), orders):
        items = dict(table)
        table.clear()
        table.update((k, items[k]) for k in [*order, *items] if k in items and k not in table)
