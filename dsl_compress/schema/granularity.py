"""Granularity: NNI's granularity values turned into block kernels, and block shrink/expand on tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from dsl_compress.diagnostics import fail
from dsl_compress.vocab import TargetKind

GRANULARITY_NAMES = ("default", "in_channel", "out_channel", "per_channel")


Reducer = Callable[["torch.Tensor", tuple[int, ...]], "torch.Tensor"]


@dataclass(frozen=True)
class BlockKernel:
    """A block shape before padding: entry k>0 is a block of k, -1 the whole dim."""

    kernel: tuple[int, ...]
    pad_mode: str = "front"
    pad_value: int = 1

    def for_rank(self, rank: int, subject: str = "tensor") -> tuple[int, ...]:
        """The kernel padded to ``rank`` entries, or an error naming the tensor."""
        if len(self.kernel) > rank:
            fail(
                "P501",
                f"granularity kernel {list(self.kernel)} has {len(self.kernel)} entries "
                f"but the tensor has rank {rank}",
                subject=subject,
                hint=f"give at most {rank} entries",
            )
        pad = (self.pad_value,) * (rank - len(self.kernel))
        return pad + self.kernel if self.pad_mode == "front" else self.kernel + pad

    def block_shape(self, shape: Sequence[int], subject: str = "tensor") -> tuple[int, ...]:
        """Shape of the per-block tensor (keepdim): size/k per dim, 1 for whole-dim entries."""
        full = self.for_rank(len(shape), subject)
        out = []
        for dim, (size, k) in enumerate(zip(shape, full)):
            if k == -1:
                out.append(1)
                continue
            if k <= 0 or size % k:
                fail(
                    "P501",
                    f"granularity block {k} does not divide dim {dim} of size {size} (shape {list(shape)})",
                    subject=subject,
                    hint="choose block sizes that divide every dim, or -1 for a whole dim",
                )
            out.append(size // k)
        return tuple(out)

    def shrink(
        self, tensor: torch.Tensor, reduce: Reducer, subject: str = "tensor"
    ) -> torch.Tensor:
        """Reduce each block to one value; the result keeps the tensor's rank."""
        sizes = self.block_shape(tensor.shape, subject)
        split: list[int] = []
        for blocks, inner in zip(sizes, self._inner(tensor.shape, full=True)):
            split.extend((blocks, inner))
        inner_dims = tuple(range(1, 2 * tensor.dim(), 2))
        if not inner_dims:
            return reduce(tensor, ())
        return reduce(tensor.reshape(split), inner_dims)

    def expand(self, blocks: torch.Tensor, shape: Sequence[int], full: bool = True) -> torch.Tensor:
        """Repeat each block value over its block; with ``full=False`` whole-dim entries stay size 1."""
        sizes = self.block_shape(shape)
        if tuple(blocks.shape) != sizes:
            blocks = blocks.reshape(sizes)
        split, target, final = [], [], []
        for nblocks, inner in zip(sizes, self._inner(shape, full)):
            split.extend((nblocks, 1))
            target.extend((nblocks, inner))
            final.append(nblocks * inner)
        return blocks.reshape(split).expand(target).reshape(final)

    def _inner(self, shape: Sequence[int], full: bool) -> list[int]:
        """Elements of a block along each dim: the kernel entry, or the whole dim for -1 (1
        without ``full``). Read from the kernel, not divided out of the shape, so a dim of
        size 0 (0 blocks, or one empty whole-dim block) needs no division by 0."""
        return [
            k if k != -1 else (size if full else 1)
            for size, k in zip(shape, self.for_rank(len(shape)))
        ]


def parse_granularity(value: Any, subject: str = "granularity") -> BlockKernel | str | None:
    """NNI's granularity value as a BlockKernel; 'default' stays a string, None stays None."""
    if value is None or value == "default":
        return value
    if value == "out_channel":
        return BlockKernel((1,), "back", -1)
    if value in ("in_channel", "per_channel"):
        return BlockKernel((-1, 1), "back", -1)
    if isinstance(value, list) and value and all(_is_int(k) for k in value):
        return BlockKernel(_checked_kernel(value, subject), "front", 1)
    if isinstance(value, list) and value and isinstance(value[0], list) and len(value) <= 3:
        return _nested_form(value, subject)
    fail(
        "C112",
        f"granularity {value!r} is not a granularity",
        subject=subject,
        hint="use 'default', 'out_channel', 'in_channel', 'per_channel', None, "
        "a list of block sizes like [1, -1], or [[sizes], 'front'|'back', pad]",
    )
    raise AssertionError("unreachable")


def _nested_form(value: list, subject: str) -> BlockKernel:
    kernel = _checked_kernel(value[0], subject)
    mode = value[1] if len(value) > 1 else "front"
    if mode not in ("front", "back"):
        fail("C112", f"granularity padding mode {mode!r} is not 'front' or 'back'", subject=subject)
    pad = value[2] if len(value) > 2 else 1
    if not _is_int(pad):
        fail("C112", f"granularity padding value {pad!r} is not an integer", subject=subject)
    return BlockKernel(kernel, mode, pad or 1)


def _checked_kernel(entries: Sequence[Any], subject: str) -> tuple[int, ...]:
    if not entries or not all(_is_int(k) and (k > 0 or k == -1) for k in entries):
        fail(
            "C112",
            f"granularity kernel {list(entries)!r} must hold positive ints or -1",
            subject=subject,
        )
    return tuple(int(k) for k in entries)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_kind(value: Any, kind: TargetKind, subject: str) -> None:
    """NNI allows out_channel/in_channel on parameters only and per_channel on activations only."""
    if value in ("out_channel", "in_channel") and kind is not TargetKind.PARAMETER:
        fail(
            "P502",
            f"granularity '{value}' applies to parameters, not to the {kind.value} target",
            subject=subject,
            hint="use 'per_channel' or a list granularity for inputs and outputs",
        )
    if value == "per_channel" and kind is TargetKind.PARAMETER:
        fail(
            "P502",
            "granularity 'per_channel' applies to inputs and outputs, not to parameters",
            subject=subject,
            hint="use 'out_channel' for one block per output channel of a weight",
        )
