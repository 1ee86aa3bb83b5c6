"""Data-parallel training across processes started by `torchrun` (which sets RANK, WORLD_SIZE, LOCAL_RANK): the
one module that reads those variables; everything else asks it.

Without them everything here is a no-op for a single process, so the loop has one code path. Reading order:
`start_processes` (join the group, pick the device), the collectives the loop uses (`all_reduce_sum`,
`broadcast_from_main`, `gather_to_all`, `on_main`), `end_processes`; `launched_rank` and `launched_world_size`
answer before the group exists (a command deciding who prints, or how many processes share a step)."""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor

logger = logging.getLogger("minibert")


@dataclass
class Processes:
    rank: int
    world_size: int
    device: torch.device
    started_group: bool  # whether start_processes() created the group (and so end_processes() should end it)

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and plots."""
        return self.rank == 0


def start_processes(device: str | None) -> Processes:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA) and pick this process's device:
    `device` if given, else CUDA when available, else cpu; "cuda" without an index means cuda:LOCAL_RANK."""
    chosen = choose_device(device)
    if chosen.type == "cuda":
        if chosen.index is None:  # one GPU per process: torchrun's LOCAL_RANK picks it
            chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
    # Under torchrun (which sets TORCHELASTIC_RUN_ID) the group is created even for one process, so that a
    # one-GPU run exercises nccl exactly as a multi-GPU one does.
    launched = launched_world_size() > 1 or "TORCHELASTIC_RUN_ID" in os.environ
    started = launched and not dist.is_initialized()
    if started:
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
        logger.info("process group: %s, %d process(es)", dist.get_backend(), dist.get_world_size())
    if not dist.is_initialized():
        return Processes(rank=0, world_size=1, device=chosen, started_group=False)
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size(), device=chosen, started_group=started)


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun), readable before the process group exists."""
    return int(os.environ.get("RANK", "0"))


def launched_world_size() -> int:
    """How many processes torchrun started (1 outside torchrun), readable before the process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def choose_device(device: str | None) -> torch.device:
    """`device` checked against this machine ("cpu", "cuda", "cuda:1", ...), or cuda when available, else cpu."""
    from minibert.errors import TrainingError, spelled
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise TrainingError(f"{spelled('device')} {device}: not a device name (cpu, cuda, cuda:1, ...)") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"{spelled('device')} {device}: CUDA is not available here (torch {torch.__version__}"
                            f"{'' if torch.version.cuda else ', a build without CUDA'}); use {spelled('device')} cpu")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise TrainingError(f"{spelled('device')} {device}: this machine has {torch.cuda.device_count()} CUDA "
                            "device(s)")
    return chosen


def end_processes(processes: Processes, failed: bool = False) -> None:
    """Leave the process group start_processes() created. After a run that ended normally every rank first waits for the
    others: a rank that closes its connections while another still finishes the last collective makes gloo abort
    that one ("terminate called without an active exception"). After a failure ranks may be out of step, so
    nobody waits."""
    if processes.started_group:
        gc.collect()  # a DistributedDataParallel wrapper left in a reference cycle still holds the group
        if not failed:
            dist.barrier()
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


def on_main(processes: Processes, work: Callable[[], Any]) -> Any:
    """`work()` on rank 0 while the other ranks wait; its result, or its error, reaches every rank (an error
    raised on rank 0 alone would leave the others waiting forever)."""
    from minibert.errors import TrainingError
    result, error = None, None
    if processes.is_main:
        try:
            result = work()
        except Exception as e:  # shared with the other ranks, then raised here unchanged
            error = e
    message = broadcast_from_main(None if error is None else str(error))
    if error is not None:
        raise error
    if message is not None:
        raise TrainingError(f"rank 0: {message}")
    return broadcast_from_main(result)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
