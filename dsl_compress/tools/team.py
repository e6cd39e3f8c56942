"""The processes of a torchrun job as one team (torch.distributed over gloo): what a streamed
apply needs of them, and nothing when the command runs as one process."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

from dsl_compress.diagnostics import fail


@dataclass(frozen=True)
class Team:
    """This process's rank among ``world`` processes, and their collectives."""

    rank: int
    world: int

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank."""
        box = [value]
        with self._peers("broadcast"):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        found: list[Any] = [None] * self.world
        with self._peers("gather"):
            dist.all_gather_object(found, value)
        return found

    def reduce(self, tensor: torch.Tensor) -> None:
        """``tensor`` summed over every rank, in place (a CPU tensor: gloo)."""
        with self._peers("sum"):
            dist.all_reduce(tensor)

    @contextlib.contextmanager
    def _peers(self, what: str) -> Iterator[None]:
        """A collective whose peer is gone (a rank that failed exits, and its connections with
        it) is X806, not a transport error: the failed rank's own message says why."""
        try:
            yield
        except RuntimeError as exc:
            fail(
                "X806",
                f"rank {self.rank}: another rank of the run stopped during a {what} "
                f"({' '.join(str(exc).split())[:160]}); nothing was published",
                subject=f"rank {self.rank}",
                hint="the failing rank's error above says why",
            )


def join_team() -> Team:
    """This process's team: the process group torchrun's variables describe, on gloo."""
    if not dist.is_available():
        fail("X806", "this torch build has no torch.distributed", subject="torchrun")
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Team(dist.get_rank(), dist.get_world_size())


def leave_team() -> None:
    """Tear the process group down (each process, at its end)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
