"""Checkpoints a run resumes from exactly, written so that a crash at any moment leaves a complete one.

Layout:

    output_dir/checkpoints/
        index.json          {"last": "step-000040", "best": "step-000030"}: the commit point
        step-000040/
            model.pt        model.state_dict(), minibert's parameter names
            training.pt     optimizer, LR scheduler, grad scaler, and the RNG states of every rank
            trainer.json    progress (step, epoch, step within the epoch, best metric), the data order (seed,
                            examples per step, dataset size), the TrainingArguments and the model config
        step-000030/        kept while it holds the best evaluation

Atomicity: a checkpoint is written into a hidden temporary folder and renamed to step-NNNNNN (renaming a folder is
atomic); only then is index.json replaced, atomically with os.replace, to name it; folders the index no longer
names are deleted last. A SIGKILL at any moment leaves index.json naming a complete checkpoint, old or new.
Loading uses torch.load(weights_only=True): tensors and plain values only, never arbitrary pickled objects.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from minibert.errors import CheckpointError
from minibert.io import atomic_write_text
from minibert.training import distributed
from minibert.training.args import TrainingArguments

logger = logging.getLogger("minibert")

CHECKPOINTS = "checkpoints"
INDEX = "index.json"


@dataclass
class TrainState:
    """Where the run is: everything besides tensors that resuming needs."""
    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch being read
    step_in_epoch: int = 0  # optimizer steps done in that epoch (each rank skips that many of its batches)
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0


# -- random number generators ---------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """This process's Python, NumPy, torch CPU and CUDA generator states, as plain values and tensors."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": (name, keys.tolist(), position, has_gauss, cached),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# -- writing ----------------------------------------------------------------------------------------------------
def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def _fsynced_save(obj: Any, path: Path) -> None:
    torch.save(obj, path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save(output_dir: Path, state: TrainState, model: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, args: TrainingArguments,
         data_order: dict[str, int], processes: distributed.Processes) -> Path:
    """Write the checkpoint of `state.step` and make it "last" (and "best" if state.best_step is this step).
    Rank 0 writes; every rank must call, as the RNG states of all ranks are gathered."""
    rng = distributed.gather_to_all(capture_rng())  # each rank resumes its own dropout stream
    folder = output_dir / CHECKPOINTS
    name = checkpoint_name(state.step)
    if processes.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=folder))
        _fsynced_save(model.state_dict(), tmp / "model.pt")
        _fsynced_save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                       "scaler": scaler.state_dict(), "rng": rng}, tmp / "training.pt")
        trainer = {"state": asdict(state), "data_order": data_order, "world_size": processes.world_size,
                   "args": args.to_dict(), "model_config": model.config.to_dict()}
        atomic_write_text(tmp / "trainer.json", json.dumps(trainer, indent=2) + "\n")

        if (folder / name).exists():  # left by a run killed before it updated the index; never indexed
            shutil.rmtree(folder / name)
        os.replace(tmp, folder / name)
        # The best checkpoint was saved at the step it was found (the loop saves on improvement), so its name
        # follows from the state; an old run's checkpoints in the same folder are not named, and so deleted.
        index = {"last": name}
        if state.best_step is not None:
            index["best"] = checkpoint_name(state.best_step)
        atomic_write_text(folder / INDEX, json.dumps(index) + "\n")  # the commit point
        for stale in folder.iterdir():
            if stale.is_dir() and stale.name not in index.values():
                shutil.rmtree(stale, ignore_errors=True)
    distributed.barrier()
    return folder / name


# -- reading ----------------------------------------------------------------------------------------------------
def find(output_dir: Path, which: str = "last") -> Path | None:
    """The folder of the "last" (or "best") checkpoint in output_dir, or None when there is none."""
    folder = output_dir / CHECKPOINTS
    if not (folder / INDEX).is_file():
        return None
    name = json.loads((folder / INDEX).read_text(encoding="utf-8")).get(which)
    if name is None:
        return None
    if not (folder / name).is_dir():
        raise CheckpointError(f"{folder / INDEX}: names {name}, which is missing")
    return folder / name


def check_model_config(folder: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Raise, naming each differing key, when the checkpoint's model config is not the model's. minibert's
    execution settings (attention kernel, unpadding) may change: they do not change the parameters."""
    keys = sorted((set(saved) | set(current)) - {"minibert"})
    differing = [f"{key} (checkpoint {saved.get(key)!r}, model {current.get(key)!r})"
                 for key in keys if saved.get(key) != current.get(key)]
    if differing:
        raise CheckpointError(f"{folder}: cannot resume, the model config differs from the checkpoint's in "
                              f"{', '.join(differing)}")


def load(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, data_order: dict[str, int],
         processes: distributed.Processes) -> TrainState:
    """Restore everything `save` wrote into the model, optimizer, scheduler, scaler and RNGs; return the state."""
    try:
        trainer = json.loads((folder / "trainer.json").read_text(encoding="utf-8"))
        model_state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        training = torch.load(folder / "training.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{folder}: cannot read checkpoint ({type(e).__name__}: {e})") from None
    check_model_config(folder, trainer["model_config"], model.config.to_dict())
    differing = [f"{key} {trainer['data_order'].get(key)} in the checkpoint, {value} now"
                 for key, value in data_order.items() if trainer["data_order"].get(key) != value]
    if differing:
        raise CheckpointError(f"{folder}: cannot resume, the data order would differ: {'; '.join(differing)}")
    model.load_state_dict(model_state)
    optimizer.load_state_dict(training["optimizer"])
    scheduler.load_state_dict(training["scheduler"])
    scaler.load_state_dict(training["scaler"])
    if len(training["rng"]) == processes.world_size:
        restore_rng(training["rng"][processes.rank])
    else:
        logger.warning("%s: saved by %d processes, resumed by %d; the data order is kept but random streams "
                       "(dropout) start afresh", folder, len(training["rng"]), processes.world_size)
    return TrainState(**trainer["state"])
