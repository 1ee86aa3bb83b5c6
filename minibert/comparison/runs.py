"""The fine-tuning runs of a comparison: one per arm, learning rate and seed, each `finetune()` itself on the
written splits (validation = the carved split, no best-checkpoint selection: the final model), then `evaluate()`
of that final model on the test split.

Each finished run leaves OUT/runs/ARM/lrRATE/seedSEED/result.json: its validation and test metrics and the key of
its settings (the arm's files, the splits' files, the seed, the rate, every shared training setting). A run whose
result.json holds the same key is reused, so an interrupted comparison continues where it stopped; one that
holds another key is never reused silently: the comparison refuses to start unless told to rerun it.

`jobs` > 1 runs that many fine-tunings at once, each in its own process on one thread (on 2 cores, two small
models train about twice as fast side by side as one after the other on two threads).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from minibert.errors import DivergedError, MinibertError, spelled
from minibert.finetuning.evaluate import evaluate
from minibert.finetuning.run import DataSpec, finetune
from minibert.plumbing.atomic_files import atomic_write_text

RESULT_FILE = "result.json"
# TrainingArguments fields a run's results do not depend on: changing them never makes a finished run stale.
NOT_IN_KEY = ("progress_bar", "plot", "log_every", "save_every", "num_workers")


@dataclass(frozen=True)
class SharedSettings:
    """What every run of a comparison shares."""
    task: str
    files: dict[str, str]  # split -> its file
    data: DataSpec  # how to read those files
    max_length: int
    doc_stride: int | None
    pooling: str | None
    reinit_layers: int
    training: dict[str, Any]  # TrainingArguments fields (learning rate and seed excluded: each run has its own)


@dataclass(frozen=True)
class RunSpec:
    arm: str
    checkpoint: str
    seed: int
    learning_rate: float
    folder: str
    key: dict[str, Any] = field(compare=False)


def run_folder(output_dir: Path, arm_slug: str, learning_rate: float, seed: int) -> Path:
    return output_dir / "runs" / arm_slug / f"lr{learning_rate:g}" / f"seed{seed}"


def run_key(arm_fingerprint: str, splits_fingerprint: str, seed: int, learning_rate: float,
            shared: SharedSettings) -> dict[str, Any]:
    """Everything a run's result depends on, as JSON would give it back."""
    key = {"checkpoint_sha256": arm_fingerprint, "splits_sha256": splits_fingerprint, "task": shared.task,
           "seed": seed, "learning_rate": learning_rate, "max_length": shared.max_length,
           "doc_stride": shared.doc_stride, "pooling": shared.pooling, "reinit_layers": shared.reinit_layers,
           "training": {name: value for name, value in shared.training.items() if name not in NOT_IN_KEY}}
    return json.loads(json.dumps(key, sort_keys=True))


def read_result(folder: Path) -> dict[str, Any] | None:
    path = folder / RESULT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged record is a run to do again


def plan(specs: Sequence[RunSpec], rerun_changed: bool) -> tuple[list[RunSpec], list[dict[str, Any]]]:
    """(runs to do, records of runs to reuse). A finished run with other settings is refused unless
    `rerun_changed`, naming what changed."""
    todo, done = [], []
    for spec in specs:
        record = read_result(Path(spec.folder))
        if record is not None and record.get("key") == spec.key:
            done.append(record)
            continue
        if record is not None and not rerun_changed:
            changed = differences(record.get("key"), spec.key)
            raise MinibertError(f"{spec.folder} holds a run with other settings ({changed}); give "
                                f"{spelled('rerun_changed')} to run it again with these, or another "
                                f"{spelled('output_dir')}")
        todo.append(spec)
    return todo, done


def differences(before: Any, now: dict[str, Any], prefix: str = "") -> str:
    """`name before -> now` for the first few settings that differ."""
    if not isinstance(before, dict):
        return "an unreadable key"
    changed = []
    for name in sorted(set(before) | set(now)):
        old, new = before.get(name), now.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            inner = differences(old, new, f"{prefix}{name}.")
            changed += [inner] if inner else []
        elif old != new:
            shown = [value[:12] + "..." if isinstance(value, str) and len(value) > 16 else value
                     for value in (old, new)]
            changed.append(f"{prefix}{name} {shown[0]} -> {shown[1]}")
    return "; ".join(changed[:3]) + ("; ..." if len(changed) > 3 else "")


def run_one(spec: RunSpec, shared: SharedSettings) -> dict[str, Any]:
    """Fine-tune, evaluate the final model on the test split, keep the record; the training state (checkpoints/,
    only needed to resume this run) is removed, the final model kept. A run that diverges (a non-finite loss: too
    high a rate) is a result too: no metrics, and the reason."""
    started = time.perf_counter()
    folder = Path(spec.folder)
    record = {"arm": spec.arm, "seed": spec.seed, "learning_rate": spec.learning_rate}
    try:
        result = finetune(spec.checkpoint, shared.task, shared.files["train"], folder,
                          validation_data=shared.files["validation"], data=shared.data, max_length=shared.max_length,
                          doc_stride=shared.doc_stride, pooling=shared.pooling,
                          reinit_layers=shared.reinit_layers, seed=spec.seed,
                          learning_rate=spec.learning_rate, **shared.training)
    except DivergedError as error:
        record.update(validation=None, test=None, diverged=str(error))
    else:
        test = evaluate(result.model_dir, shared.files["test"], data=shared.data,
                        batch_size=shared.training.get("per_device_batch_size", 32), doc_stride=shared.doc_stride,
                        precision=shared.training.get("precision", "fp32"), device=shared.training.get("device"))
        record.update(validation=result.metrics, test=test, steps=result.training.steps,
                      train_loss=result.training.train_loss, precision=result.training.precision,
                      model_dir=str(result.model_dir))
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    record.update(seconds=round(time.perf_counter() - started, 1), threads=torch.get_num_threads(), key=spec.key)
    atomic_write_text(folder / RESULT_FILE, json.dumps(record, indent=1) + "\n")
    return record


def run_all(specs: Sequence[RunSpec], shared: SharedSettings, jobs: int, done: Callable[[dict[str, Any]], None],
            work: Callable[[RunSpec, SharedSettings], dict[str, Any]] = run_one) -> list[dict[str, Any]]:
    """Every run (`work`, run_one), `jobs` at a time; `done(record)` as each finishes, not when all have."""
    records = []
    if jobs == 1 or len(specs) <= 1:
        for spec in specs:
            records.append(work(spec, shared))
            done(records[-1])
        return records
    # spawn: a fresh interpreter per worker (forking a process that has started torch's threads can deadlock).
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=one_thread) as pool:
        pending = {pool.submit(work, spec, shared) for spec in specs}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    records.append(future.result())
                    done(records[-1])
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return records


def one_thread() -> None:
    torch.set_num_threads(1)
