"""Sharding evaluation work across processes started by ``accelerate launch`` or ``torchrun``.

Why: an evaluation launched on N processes must split its examples between them and write one result, not have
every process evaluate everything and write the same file. Work items are dealt round-robin; :meth:`Shards.map`
returns every item's result, in order, on every process, so metrics computed from them are identical to a
single-process run. Without a launcher (``WORLD_SIZE`` unset or 1) nothing is imported and nothing is shared.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Shards", "current_shards"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Shards:
    """This process's rank among ``world`` processes (``rank`` 0 is the main process, which writes results)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def mine(self, n: int) -> list[int]:
        """Indices of the work items this process handles (round-robin)."""
        return list(range(self.rank, n, self.world))

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]``, each item computed by one process; the full list on every process."""
        local = [(i, fn(items[i])) for i in self.mine(len(items))]
        if not self.distributed:
            return [r for _, r in local]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, local)
        results: dict[int, R] = {i: r for part in gathered for i, r in part}
        return [results[i] for i in range(len(items))]

    def device(self, requested: str) -> str:
        """``cuda`` means this process's own GPU when several processes share a machine."""
        if self.distributed and requested == "cuda":
            return f"cuda:{self.local_rank}"
        return requested

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def current_shards() -> Shards:
    """The shards of this process, from the launcher's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``).

    accelerate's state sets up the process group (NCCL on GPUs); where it does not (a machine without GPUs, where
    it reports a single process), a gloo group is started from the same environment.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Shards()
    import torch.distributed as dist

    if not dist.is_initialized():
        try:
            from accelerate import PartialState

            PartialState()
        except ImportError:  # pragma: no cover - accelerate is a dependency
            pass
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Shards(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)))
