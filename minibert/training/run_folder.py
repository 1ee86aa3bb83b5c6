"""A run's output folder: one run at a time, an earlier run never silently replaced, `resume` only with something
to resume, and what a resumed run changed said in one line."""

from __future__ import annotations

import logging
import math
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from minibert.errors import TrainingError, spelled
from minibert.plumbing.atomic_files import remove_own_temps, remove_stale_temps, unwritable_reason
from minibert.plumbing.output_lock import output_lock
from minibert.training import train_state
from minibert.training.args import TrainingArguments
from minibert.training.processes import Processes, on_main

logger = logging.getLogger("minibert")

# What a run leaves in its folder (finetune adds best/); prepared data (pretrain's data/) is not a run.
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "final", "best")


def earlier_run(folder: Path) -> list[str]:
    """The outputs of an earlier run found in `folder`."""
    found = []
    for name in RUN_OUTPUTS:
        path = folder / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            found.append(name + ("/" if path.is_dir() else ""))
    return found


def check_output_dir(args: TrainingArguments) -> None:
    """Before any work: the folder can be written; `resume` has a checkpoint to continue; a new run does not
    replace an earlier one unless `overwrite_output_dir` says so (as with transformers' Trainer scripts)."""
    folder = Path(args.output_dir)
    check_writable(folder)
    if args.resume:
        if train_state.find(folder) is None:
            raise TrainingError(f"{spelled('resume')}: no checkpoint in {folder / train_state.CHECKPOINTS} to "
                                f"continue from; run without {spelled('resume')} to start"
                                + (f" ({spelled('overwrite_output_dir')} replaces what is there)"
                                   if earlier_run(folder) else ""))
    elif earlier_run(folder) and not args.overwrite_output_dir:
        raise TrainingError(f"{folder} holds an earlier run ({', '.join(earlier_run(folder))}); give "
                            f"{spelled('resume')} to continue it, {spelled('overwrite_output_dir')} to replace it, "
                            f"or another {spelled('output_dir')}")


def check_writable(folder: Path) -> None:
    """Fail before any work, not at the first checkpoint an hour in (and without creating the folder)."""
    reason = unwritable_reason(folder)
    if reason is not None:
        raise TrainingError(f"{spelled('output_dir')} {folder} is not writable ({reason})")


@contextmanager
def hold_output_dir(folder: Path, processes: Processes,
                    check: Callable[[], None] | None = None) -> Iterator[None]:
    """Rank 0 holds the folder's lock (see minibert.plumbing.output_lock) for the block, after removing temporaries that
    killed writers left there, and runs `check` (e.g. check_output_dir) once it holds it: on rank 0 alone, since
    the other ranks could see files rank 0 already wrote. A refusal reaches every rank."""
    with ExitStack() as stack:
        def take() -> None:
            check_writable(folder)
            stack.enter_context(output_lock(folder))
            for place in (folder, folder / train_state.CHECKPOINTS):
                for path in remove_stale_temps(place):
                    logger.info("removed %s, left by a killed run", path)
            if check is not None:
                check()

        on_main(processes, take)
        try:
            yield
        except BaseException:
            if processes.is_main:  # e.g. the pending metrics of a new run that never saved a checkpoint
                remove_own_temps(folder)
            raise


def describe_resume(saved: dict[str, Any], args: TrainingArguments, steps_per_epoch: int, step: int,
                    lr_now: float) -> str | None:
    """One line listing what this resumed run changes in the schedule the checkpoint was trained with (the
    changes are applied: see optim.set_schedule), or None when nothing changed."""
    def total(run: dict[str, Any]) -> int:
        return run.get("max_steps") or run.get("num_epochs", 1) * steps_per_epoch

    def warmup(run: dict[str, Any]) -> int:
        return run.get("warmup_steps") or math.ceil(run.get("warmup_ratio", 0.0) * total(run))

    now = args.to_dict()
    length = "max_steps" if saved.get("max_steps") != now.get("max_steps") else "num_epochs"
    changes = []
    for label, field, value in (("peak learning rate", "learning_rate", lambda run: run.get("learning_rate")),
                                ("total steps", length, total), ("warm-up steps", "warmup_steps", warmup),
                                ("weight decay", "weight_decay", lambda run: run.get("weight_decay")),
                                ("gradient clipping", "max_grad_norm", lambda run: run.get("max_grad_norm")),
                                ("precision", "precision", lambda run: run.get("precision"))):
        before, after = value(saved), value(now)
        if before != after:
            changes.append(f"{label} {before} -> {after} ({spelled(field)})")
    if not changes:
        return None
    return (f"resuming at step {step} with a changed schedule: {'; '.join(changes)}; learning rate now "
            f"{lr_now:.3g}")
