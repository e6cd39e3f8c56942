"""The taylor metric over a meta skeleton: forward and backward passes with each module's
weights read just before its forward, and read again where backward needs them, never held."""

from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

import torch

from dsl_compress.engine.calibration import run_batches
from dsl_compress.engine.onload import onloaded, read_normal
from dsl_compress.engine.options import LossFn
from dsl_compress.engine.prune import (
    check_trainable,
    checked_loss,
    require_taylor_inputs,
    require_batches,
    taylor_entries,
)
from dsl_compress.engine.spilled_scores import SpilledMeans, SpilledTotals
from dsl_compress.plan import Key, PlanEntry, tensor_name

Read = Callable[[str], torch.Tensor]


def streamed_taylor_scores(
    skeleton: torch.nn.Module,
    entries: Sequence[PlanEntry],
    calib: Any,
    loss_fn: LossFn | None,
    read: Read,
) -> dict[Key, torch.Tensor]:
    """The taylor scores the in-memory engine computes (``prune._taylor_scores``), bit for bit,
    over a skeleton whose tensors ``read`` gives by state-dict name.

    Each parameter is the output of an autograd function fed by a tiny anchor rather than a
    leaf, so no AccumulateGrad node keeps it; a tensor backward saves that is (a view of) a
    loaded tensor is packed as its name and geometry and read again when backward needs it.
    The function's backward gets exactly the gradient the in-memory engine's
    ``autograd.grad`` returns for that use of the weight; the uses of a weight run more than
    once in a batch are summed first, as autograd sums them, then (w*grad)^2 is added in fp32.
    """
    taylor = taylor_entries(entries)
    if not taylor:
        return {}
    require_taylor_inputs(taylor, calib, loss_fn)
    state = skeleton.state_dict(keep_vars=True)
    check_trainable(taylor, [state[tensor_name(*e.key)] for e in taylor])
    pass_ = _GradientPass(state, [tensor_name(*e.key) for e in taylor], read)
    steps = run_batches(skeleton, calib, lambda batch: pass_.batch(skeleton, batch, loss_fn))
    require_batches(taylor, steps)
    return SpilledMeans(pass_.totals, {e.key: pass_.canonical(e) for e in taylor}, steps)


class _GradientPass:
    """The loaded tensors of one pass, the gradients of one batch and the scores' totals.

    The scores' fp32 totals are on disk (``SpilledTotals``), each read, added to and written
    back as its weight's gradient arrives; a weight lives from its module's forward to its
    end, and again briefly where backward reads it.
    """

    def __init__(self, state: dict[str, torch.Tensor], targets: list[str], read: Read):
        self._read = read
        # A tied tensor is one weight under several names: its gradient is summed over all.
        by_id = {id(tensor): name for name, tensor in reversed(list(state.items()))}
        self._canonical = {name: by_id[id(tensor)] for name, tensor in state.items()}
        self._trainable = {
            n for n, t in state.items() if isinstance(t, torch.nn.Parameter) and t.requires_grad
        }
        targets = [self._canonical[n] for n in targets]
        self.totals = SpilledTotals({n: tuple(state[n].shape) for n in targets})
        # Each loaded tensor: (weakly) itself, its name, its memory and its version when read.
        self._loaded: list[tuple[weakref.ref, str, int, int, int]] = []
        self._uses: dict[str, int] = {}
        self._pending: dict[str, torch.Tensor] = {}
        # Every trainable weight takes a gradient, as the in-memory model's do (so the loss
        # requires one exactly when it does there); only the targets' are computed.
        self._anchor = torch.zeros((), requires_grad=True)
        self._inert = torch.zeros((), requires_grad=True)

    def batch(self, skeleton: torch.nn.Module, batch: Any, loss_fn: LossFn) -> None:
        """One forward and backward pass; the batch's (w*grad)^2 added to the totals."""
        self._uses.clear()
        try:
            with onloaded(skeleton, self.read_loaded, self._load_parameter):
                with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
                    loss = checked_loss(loss_fn(skeleton, batch))
                    torch.autograd.grad(loss, [self._anchor], allow_unused=True)
            for name, grad in self._pending.items():
                self._add(name, grad)
        finally:
            self._pending.clear()
            self._loaded.clear()

    def _load_parameter(self, name: str, meta: torch.Tensor) -> torch.Tensor:
        if name not in self._trainable:
            return torch.nn.Parameter(self.read_loaded(name), requires_grad=False)
        name = self._canonical[name]
        target = name in self.totals
        if target:
            self._uses[name] = self._uses.get(name, 0) + 1
        anchor = self._anchor if target else self._inert
        return _Loaded.apply(anchor, name, self)

    def read_loaded(self, name: str) -> torch.Tensor:
        """``name`` read (a normal tensor also inside inference_mode, :func:`read_normal`) and
        remembered (weakly) as loaded, so backward saves it by name."""
        tensor = read_normal(self._read, name)
        if tensor.numel():
            start = tensor.data_ptr()
            end = start + tensor.numel() * tensor.element_size()
            self._loaded.append((weakref.ref(tensor), name, start, end, tensor._version))
        return tensor

    def _pack(self, tensor: torch.Tensor) -> Any:
        """A saved tensor inside a loaded tensor's memory (it, or a view of it) by reference,
        while that tensor is as read (one changed in place, a buffer the forward updates, is
        kept as it is: the checkpoint no longer holds its value)."""
        if tensor.numel() == 0 or tensor.device.type != "cpu":
            return tensor
        ptr = tensor.data_ptr()
        for ref, name, start, end, version in self._loaded:
            loaded = ref()
            if loaded is not None and start <= ptr < end and loaded.dtype == tensor.dtype:
                if loaded._version != version:
                    return tensor
                offset = (ptr - start) // tensor.element_size()
                return _Saved(name, tuple(tensor.shape), tensor.stride(), offset)
        return tensor

    def _unpack(self, packed: Any) -> torch.Tensor:
        if not isinstance(packed, _Saved):
            return packed
        fresh = self._read(packed.name)
        return fresh.as_strided(packed.shape, packed.stride, fresh.storage_offset() + packed.offset)

    def gradient(self, name: str, grad: torch.Tensor) -> None:
        """One use's gradient: a weight used once is scored now, one used more once all
        its uses' gradients are summed (at the end of the batch's backward)."""
        if self._uses.get(name, 0) <= 1:
            self._add(name, grad)
        elif name in self._pending:
            self._pending[name] = self._pending[name] + grad
        else:
            self._pending[name] = grad

    def _add(self, name: str, grad: torch.Tensor) -> None:
        self.totals.add(name, self._read(name), grad)

    def canonical(self, entry: PlanEntry) -> str:
        """The name an entry's weight is scored under (the first of its tied names)."""
        return self._canonical[tensor_name(*entry.key)]


class _Saved:
    """A saved tensor by reference: the loaded tensor's name and the view's geometry."""

    __slots__ = ("name", "shape", "stride", "offset")

    def __init__(self, name: str, shape: tuple, stride: tuple, offset: int):
        self.name, self.shape, self.stride, self.offset = name, shape, stride, offset


class _Loaded(torch.autograd.Function):
    """A weight read in forward (an anchor is its one input, so it takes a gradient without
    being a leaf); backward hands the weight's gradient to the pass."""

    @staticmethod
    def forward(ctx, anchor: torch.Tensor, name: str, pass_: _GradientPass) -> torch.Tensor:
        ctx.name, ctx.pass_ = name, pass_
        return pass_.read_loaded(name)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        if ctx.name in ctx.pass_.totals:
            ctx.pass_.gradient(ctx.name, grad)
        return torch.zeros(()), None, None
