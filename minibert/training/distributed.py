"""Data-parallel training across processes started by `torchrun` (which sets RANK, WORLD_SIZE, LOCAL_RANK).

Without those variables everything here is a no-op for a single process, so the loop has one code path."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

logger = logging.getLogger("minibert")


@dataclass
class Processes:
    rank: int
    world_size: int
    device: torch.device
    started_group: bool  # whether setup() created the process group (and so teardown() should end it)

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and plots."""
        return self.rank == 0


def setup(device: str | None) -> Processes:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA) and pick this process's device:
    `device` if given, else CUDA when available, else cpu; "cuda" without an index means cuda:LOCAL_RANK."""
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if chosen.type == "cuda":
        if chosen.index is None:  # one GPU per process: torchrun's LOCAL_RANK picks it
            chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
    # Under torchrun (which sets TORCHELASTIC_RUN_ID) the group is created even for one process, so that a
    # one-GPU run exercises nccl exactly as a multi-GPU one does.
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or "TORCHELASTIC_RUN_ID" in os.environ
    started = launched and not dist.is_initialized()
    if started:
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
        logger.info("process group: %s, %d process(es)", dist.get_backend(), dist.get_world_size())
    if not dist.is_initialized():
        return Processes(rank=0, world_size=1, device=chosen, started_group=False)
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size(), device=chosen, started_group=started)


def teardown(processes: Processes) -> None:
    if processes.started_group:
        dist.destroy_process_group()


def all_reduce_sum(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Sum each value over all processes (one collective for the whole dict; keys must match across ranks)."""
    if not dist.is_initialized():
        return values
    names = sorted(values)
    stacked = torch.stack([values[name] for name in names])
    dist.all_reduce(stacked)
    return dict(zip(names, stacked))


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (other ranks' `obj` is ignored)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_all(obj: Any) -> list[Any]:
    """Every rank's `obj`, indexed by rank."""
    if not dist.is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
