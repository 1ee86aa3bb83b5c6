"""Checkpoints a run resumes from exactly, written so that a crash at any moment leaves a complete one.

Layout:

    output_dir/checkpoints/
        index.json          {"last": "step-000040", "best": "step-000030"}: the commit point
        step-000040/
            model.safetensors, config.json   the model as save_pretrained writes it (Hugging Face names): a folder
                            that minibert's and transformers' from_pretrained load as it is
            training.pt     optimizer, LR scheduler, grad scaler, and the RNG states of every rank
            trainer.json    progress (step, epoch, step within the epoch, best metric), the data order (seed,
                            examples per step, dataset size), the TrainingArguments, the model's class and config
        step-000030/        kept while it holds the best evaluation

Atomicity: a checkpoint is written into a hidden temporary folder and renamed to step-NNNNNN (renaming a folder is
atomic); only then is index.json replaced, atomically with os.replace, to name it; folders the index no longer
names are deleted last. A SIGKILL at any moment leaves index.json naming a complete checkpoint, old or new; the
temporary folder it may leave (named after its writer's host and process) is removed by the next save. A write
that fails (a full disk) removes its temporary folder at once, so the space comes back and `--resume` works.
Weights holding inf or NaN are never saved. Loading uses torch.load(weights_only=True): tensors and plain values
only, never arbitrary pickled objects; a damaged index, trainer.json, weights or .pt file is an error naming the
file. (Checkpoints of minibert 0.1.0 kept the weights in model.pt, minibert's names; they still resume.)
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from minibert.checkpoint import load_exact, write_model_files
from minibert.errors import CheckpointError, TrainingError, spelled
from minibert.plumbing.atomic_files import atomic_write_text, remove_stale_temps, temp_name, torch_save
from minibert.training.processes import Processes, gather_to_all, on_main
from minibert.training.args import TrainingArguments

logger = logging.getLogger("minibert")

CHECKPOINTS = "checkpoints"
INDEX = "index.json"
MODEL_FILE = "model.safetensors"
LEGACY_MODEL_FILE = "model.pt"  # minibert 0.1.0's checkpoints: model.state_dict(), minibert's names


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


def check_finite_weights(model: nn.Module, step: int, last: Path | None) -> None:
    """Never save weights that hold inf or NaN: the checkpoint a failed run names as good must be good."""
    broken = [name for name, param in model.named_parameters() if not bool(torch.isfinite(param).all())]
    if broken:
        raise TrainingError(f"step {step}: the weights hold non-finite values ({', '.join(broken[:3])}"
                            f"{', ...' if len(broken) > 3 else ''}); not saved; last good checkpoint: "
                            f"{last or 'none yet'}")


def save(output_dir: Path, state: TrainState, model: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, args: TrainingArguments,
         data_order: dict[str, Any], processes: Processes, last: Path | None = None,
         before_commit: Callable[[], None] | None = None) -> Path:
    """Write the checkpoint of `state.step` and make it "last" (and "best" if state.best_step is this step).
    Rank 0 writes; every rank must call, as the RNG states of all ranks are gathered. `last` is the checkpoint
    before this one (named in errors); `before_commit` runs once the checkpoint is complete on disk, just before
    the index names it. A failed write (a full disk) removes the partial checkpoint and raises, naming it."""
    check_finite_weights(model, state.step, last)
    rng = gather_to_all(capture_rng())  # each rank resumes its own dropout stream
    folder = output_dir / CHECKPOINTS
    name = checkpoint_name(state.step)

    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = _write_folder(folder, name, model, optimizer, scheduler, scaler, args, data_order, processes, rng,
                            state, last)
        if before_commit is not None:
            before_commit()
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

    on_main(processes, write)  # a failure on rank 0 stops every rank
    return folder / name


def _write_folder(folder: Path, name: str, model: nn.Module, optimizer, scheduler, scaler,
                  args: TrainingArguments, data_order: dict[str, Any], processes: Processes,
                  rng: list, state: TrainState, last: Path | None) -> Path:
    """The checkpoint's files, in a temporary folder beside the others (removed again if a write fails)."""
    remove_stale_temps(folder)  # left by a killed save
    tmp = folder / temp_name(name)
    try:
        os.mkdir(tmp, 0o777)  # inside the try: an interrupt right after it still removes it
        write_checkpoint_model(model, tmp)
        torch_save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(), "rng": rng}, tmp / "training.pt")
        trainer = {"state": asdict(state), "data_order": data_order, "world_size": processes.world_size,
                   "args": args.to_dict(), "model_class": type(model).__name__,
                   "model_config": model.config.to_dict()}
        atomic_write_text(tmp / "trainer.json", json.dumps(trainer, indent=2) + "\n")
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(e, OSError):
            raise
        then = (f"the last one ({last}) is intact: make room, then rerun with {spelled('resume')}" if last else
                "make room, then run again")
        raise CheckpointError(f"{folder / name}: cannot write the checkpoint ({(e.strerror or str(e)).lower()}); "
                              f"its partial files were removed; {then}") from None
    return tmp


# -- reading ----------------------------------------------------------------------------------------------------
def find(output_dir: Path, which: str = "last") -> Path | None:
    """The folder of the "last" (or "best") checkpoint in output_dir, or None when there is none."""
    folder = output_dir / CHECKPOINTS
    path = folder / INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged ({'empty' if not path.stat().st_size else e}); it names the "
                              f"checkpoint to resume from: restore it, or start over with "
                              f"{spelled('overwrite_output_dir')}") from None
    name = index.get(which) if isinstance(index, dict) else None
    if isinstance(index, dict) and name is None:
        return None
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        raise CheckpointError(f"{path}: damaged (expected {{\"last\": \"step-NNNNNN\"}}, got {json.dumps(index)[:80]})")
    if not (folder / name).is_dir():
        raise CheckpointError(f"{path}: names {name}, which is missing")
    return folder / name


def check_model_class(folder: Path, saved: str | None, current: str) -> None:
    """The checkpoint must be of the model's class (None: a checkpoint from before the class was recorded)."""
    if saved is not None and saved != current:
        raise CheckpointError(f"{folder}: cannot resume, the checkpoint holds a {saved} and this run trains a "
                              f"{current}")


def check_model_config(folder: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Raise, naming each differing key, when the checkpoint's model config is not the model's. minibert's
    execution settings (attention kernel, unpadding) may change: they do not change the parameters."""
    keys = sorted((set(saved) | set(current)) - {"minibert"})
    differing = [f"{key} (checkpoint {saved.get(key)!r}, model {current.get(key)!r})"
                 for key in keys if saved.get(key) != current.get(key)]
    if differing:
        raise CheckpointError(f"{folder}: cannot resume, the model config differs from the checkpoint's in "
                              f"{', '.join(differing)}")


def check_model_tensors(path: Path, saved: Any, expected: dict[str, torch.Tensor]) -> None:
    """A 0.1.0 checkpoint's model.pt must hold exactly the model's tensors, with their shapes."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(saved).__name__}")
    missing = [name for name in expected if name not in saved]
    unexpected = [name for name in saved if name not in expected]
    reshaped = [name for name in expected if name in saved and isinstance(saved[name], torch.Tensor)
                and saved[name].shape != expected[name].shape]
    if missing or unexpected or reshaped:
        found = "; ".join(f"{what}: {_first_names(names)}" for what, names in (
            ("missing", missing), ("not the model's", unexpected), ("other shape", reshaped)) if names)
        raise CheckpointError(f"{path}: does not hold this model's weights ({found})")


def _first_names(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (" ..." if len(names) > shown else "")


TRAINER_KEYS = {"state": dict, "data_order": dict, "args": dict, "model_config": dict}


def read_trainer(folder: Path) -> dict[str, Any]:
    """trainer.json, checked for what resuming reads from it."""
    path = folder / "trainer.json"
    try:
        trainer = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(trainer, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    for key, kind in TRAINER_KEYS.items():
        if not isinstance(trainer.get(key), kind):
            raise CheckpointError(f"{path}: {'missing' if key not in trainer else 'bad'} key '{key}' (a damaged "
                                  "checkpoint, or one written by another program)")
    try:
        TrainState(**trainer["state"])
    except TypeError:
        raise CheckpointError(f"{path}: 'state' should hold {', '.join(TrainState.__dataclass_fields__)}, got "
                              f"{', '.join(trainer['state'])}") from None
    return trainer


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only
    except Exception as e:  # OSError, a damaged zip (RuntimeError), or an object weights_only refuses to unpickle
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: cannot read ({type(e).__name__}: {reason[:200]})") from None


def write_checkpoint_model(model: nn.Module, folder: Path) -> None:
    """The model's files: model.safetensors + config.json, or a model's own layout when it is made of several
    networks and says so (ELECTRA's `write_checkpoint_files`: its save_pretrained folder)."""
    if hasattr(model, "write_checkpoint_files"):
        model.write_checkpoint_files(folder)
    else:
        write_model_files(model, folder)


def load_weights(folder: Path, model: nn.Module) -> None:
    """A checkpoint's weights into `model` (which must be the checkpoint's model: same tensors and shapes)."""
    if hasattr(model, "load_checkpoint_files"):  # a model with its own layout (see write_checkpoint_model)
        model.load_checkpoint_files(folder)
        return
    if (folder / MODEL_FILE).is_file() or not (folder / LEGACY_MODEL_FILE).is_file():
        load_exact(model, folder / MODEL_FILE)
        return
    model_state = _torch_load(folder / LEGACY_MODEL_FILE)  # a checkpoint of minibert 0.1.0
    check_model_tensors(folder / LEGACY_MODEL_FILE, model_state, model.state_dict())
    model.load_state_dict(model_state)


def check_data_order(folder: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Resuming must read the data the run started on, in the same order: same examples (by content), seed and
    examples per step. Keys an older checkpoint did not record are not compared."""
    if "data_sha256" in saved and saved["data_sha256"] != current.get("data_sha256"):
        raise CheckpointError(f"{folder}: cannot resume, the training data differs from the run's (content hash "
                              f"{str(saved['data_sha256'])[:12]} in the checkpoint, "
                              f"{str(current.get('data_sha256'))[:12]} now); resume with the same data, or start "
                              f"a new run ({spelled('overwrite_output_dir')}, or another {spelled('output_dir')})")
    names = {"seed": spelled("seed"), "examples_per_step": "examples per step", "num_examples": "examples"}
    differing = [f"{names.get(key, key)} {saved[key]} in the checkpoint, {current[key]} now"
                 for key in current if key != "data_sha256" and key in saved and saved[key] != current[key]]
    if differing:
        raise CheckpointError(f"{folder}: cannot resume, the data order would differ: {'; '.join(differing)}")


def load(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler, data_order: dict[str, Any],
         processes: Processes) -> tuple[TrainState, dict[str, Any]]:
    """Restore everything `save` wrote into the model, optimizer, scheduler, scaler and RNGs; return the state and
    the run's saved TrainingArguments (as a dict)."""
    trainer = read_trainer(folder)
    check_model_class(folder, trainer.get("model_class"), type(model).__name__)
    check_model_config(folder, trainer["model_config"], model.config.to_dict())
    check_data_order(folder, trainer["data_order"], data_order)
    training = _torch_load(folder / "training.pt")
    if not isinstance(training, dict) or not {"optimizer", "scheduler", "scaler", "rng"} <= set(training):
        raise CheckpointError(f"{folder / 'training.pt'}: expected optimizer, scheduler, scaler and rng states")
    load_weights(folder, model)
    try:
        optimizer.load_state_dict(training["optimizer"])
        scheduler.load_state_dict(training["scheduler"])
        scaler.load_state_dict(training["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{folder}: the checkpoint does not fit this model and optimizer ({reason[:200]})") \
            from None
    if len(training["rng"]) == processes.world_size:
        restore_rng(training["rng"][processes.rank])
    else:
        logger.warning("%s: saved by %d processes, resumed by %d; the data order is kept but random streams "
                       "(dropout) start afresh", folder, len(training["rng"]), processes.world_size)
    return TrainState(**trainer["state"]), trainer["args"]
