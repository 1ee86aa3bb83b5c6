"""train(): the one training loop, for pretraining and fine-tuning alike.

It reads in the order a run goes: set up (processes, data order, optimizer and schedule, precision, resume),
then, for every optimizer step, fetch its micro-batches, count, forward and backward each, check the loss, clip,
step; then log, evaluate, save. What a task computes lives in task.py / pretraining.py / finetuning.py; which
examples a step reads in batches.py; the rest in optim.py, checkpointing.py, distributed.py, reporting.py and
curves.py, one job each.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from minibert.errors import spelled
from minibert.training import checkpointing, distributed
from minibert.training.args import TrainingArguments
from minibert.training.batches import EpochBatches, eval_loader, train_loader
from minibert.training.checkpointing import TrainState
from minibert.training.curves import plot_curves
from minibert.training.errors import TrainingError
from minibert.training.fingerprint import dataset_fingerprint
from minibert.training.optim import build_optimizer, linear_warmup_decay, set_schedule
from minibert.training.precision import autocast as precision_autocast, resolve_precision
from minibert.training.reporting import MetricsLog, Progress
from minibert.training.run_folder import check_output_dir, describe_resume, hold_output_dir
from minibert.training.task import Task, to_device

logger = logging.getLogger("minibert")


@dataclass
class TrainResult:
    final_metrics: dict[str, float]  # the last evaluation; empty without an eval set
    train_loss: float | None  # the last step's loss
    best_metric: float | None  # args.keep_best_metric at its best evaluation
    best_step: int | None
    steps: int  # optimizer steps done, counting those before a resume
    wall_time_s: float  # this call, setup and evaluation included
    tokens_per_s: float  # real (unpadded) tokens trained on per second of training steps, all processes
    stopped_early: bool
    output_dir: Path


def train(model: nn.Module, task: Task, train_dataset: Dataset, eval_dataset: Dataset | None,
          args: TrainingArguments, collate_fn: Callable[[list], dict[str, Any]]) -> TrainResult:
    """Train `model` on `task` (see task.py); under torchrun, one process per device, data-parallel.

    Writes to args.output_dir: checkpoints/ (see checkpointing.py), metrics.jsonl, curves.png, and final/ (the
    trained model, `save_pretrained` format). The folder is locked for the run (one run at a time); a new run over
    an earlier one needs args.overwrite_output_dir, and replaces its files only as it saves its own."""
    started = time.perf_counter()
    processes = distributed.setup(args.device)
    with hold_output_dir(Path(args.output_dir), processes, check=lambda: check_output_dir(args)):
        return _train(model, task, train_dataset, eval_dataset, args, collate_fn, processes, started)


def _train(model: nn.Module, task: Task, train_dataset: Dataset, eval_dataset: Dataset | None,
           args: TrainingArguments, collate_fn: Callable[[list], dict[str, Any]], processes: distributed.Processes,
           started: float) -> TrainResult:
    device, world = processes.device, processes.world_size
    output_dir = Path(args.output_dir)
    if args.precision == "fp16" and device.type != "cuda":
        raise TrainingError(f"{spelled('precision')} fp16 needs a CUDA device (loss scaling is for its kernels); use "
                            "bf16 on CPU")
    if args.keep_best_metric and eval_dataset is None:
        raise TrainingError(f"keep_best_metric {args.keep_best_metric!r} needs an eval_dataset")
    seed_everything(args.seed + processes.rank)  # dropout differs between ranks, as in nanoGPT

    # One optimizer step reads k micro-batches on each of `world` processes (batches.py fixes which examples).
    k = args.grad_accumulation_steps
    examples_per_step = args.per_device_batch_size * k * world
    steps_per_epoch = len(train_dataset) // examples_per_step
    if steps_per_epoch == 0:
        raise TrainingError(f"the training set has {len(train_dataset)} examples, fewer than one optimizer step "
                            f"reads ({examples_per_step} = {spelled('per_device_batch_size')} x "
                            f"{spelled('grad_accumulation_steps')} x {world} processes)")
    max_steps = args.max_steps or args.num_epochs * steps_per_epoch
    # What resuming must find again; the content hash tells other data of the same size (flipped labels) apart.
    data_order = {"seed": args.seed, "examples_per_step": examples_per_step, "num_examples": len(train_dataset),
                  "data_sha256": dataset_fingerprint(train_dataset)}

    model.to(device)
    raw_model = model  # DDP wraps `model` below; saving, evaluation and the config use the model itself
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay)
    scheduler = linear_warmup_decay(optimizer, args.warmup_for(max_steps), max_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")  # a pass-through unless fp16
    precision = resolve_precision(args, model, task, train_dataset, collate_fn, device, max_steps)  # "auto": probed
    autocast = precision_autocast(precision, device)

    state, last_checkpoint = TrainState(), None
    if args.resume:  # check_output_dir made sure there is a checkpoint
        last_checkpoint = checkpointing.find(output_dir)
        state, saved_args = checkpointing.load(last_checkpoint, model, optimizer, scheduler, scaler, data_order,
                                               processes)
        set_schedule(optimizer, scheduler, args.learning_rate, args.weight_decay)  # this run's, not the saved one's
        changed = describe_resume(saved_args, args, steps_per_epoch, state.step, scheduler.get_last_lr()[0])
        if changed and processes.is_main:
            logger.warning(changed)
    if world > 1:
        # Every parameter must get a gradient at every step (DDP waits for each); see PretrainingTask.loss_terms.
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    pin_memory = device.type == "cuda"
    evaluation = None if eval_dataset is None else eval_loader(
        eval_dataset, collate_fn, args.per_device_batch_size, args.seed, args.num_workers, pin_memory)
    metrics_log = MetricsLog(output_dir / "metrics.jsonl", state.step if last_checkpoint else None) \
        if processes.is_main else None
    progress = Progress(processes.is_main and args.progress_bar is not None, bool(args.progress_bar), max_steps,
                        state.step, args.log_every)
    eval_metrics: dict[str, float] = {}
    loss_value, tokens_trained, training_time, stopped_early = None, 0.0, 0.0, False

    model.train()
    stop = state.step >= max_steps
    while not stop:
        if hasattr(train_dataset, "set_epoch"):  # e.g. dynamic masking: fresh masks every epoch
            train_dataset.set_epoch(state.epoch)
        batches = EpochBatches(len(train_dataset), args.per_device_batch_size, k, processes.rank, world, args.seed,
                               state.epoch, start_step=state.step_in_epoch)
        epoch_micro_batches = iter(train_loader(train_dataset, collate_fn, batches, args.num_workers, pin_memory))
        for _ in range(state.step_in_epoch, steps_per_epoch):
            step_started = time.perf_counter()
            micro_batches = [to_device(next(epoch_micro_batches), device) for _ in range(k)]

            # Exact loss normalisation (task.py): each term's count over the whole step, all micro-batches and
            # all ranks, is read off the batches before any forward pass; each micro-batch backpropagates its
            # sums divided by those totals, so the step's gradient is that of one batch of examples_per_step.
            counts = [task.counts(batch) for batch in micro_batches]
            totals = distributed.all_reduce_sum(
                {name: sum(torch.as_tensor(c[name], dtype=torch.int64, device=device) for c in counts)
                 for name in counts[0]})
            denominators = {name: total.clamp(min=1) for name, total in totals.items()}
            sums = {name: torch.zeros((), device=device) for name in totals}
            for i, batch in enumerate(micro_batches):
                if world > 1:
                    model.require_backward_grad_sync = i == k - 1  # all-reduce gradients once, after the last
                with autocast:
                    terms = task.loss_terms(model, batch)
                    # DDP averages gradients over ranks; the factor `world` turns that average into the sum.
                    loss = world * sum(term_sum / denominators[name] for name, (term_sum, _) in terms.items())
                scaler.scale(loss).backward()
                for name, (term_sum, _) in terms.items():
                    sums[name] += term_sum.detach().float()
            sums = distributed.all_reduce_sum(sums)  # the global loss, not rank 0's share
            losses = {f"{name}_loss": (sums[name] / denominators[name]).item() for name in sums}
            loss_value = sum(losses.values())
            if not math.isfinite(loss_value):
                terms_text = ", ".join(f"{name}={value}" for name, value in losses.items())
                raise non_finite(f"the loss is {loss_value} ({terms_text})", state.step + 1, last_checkpoint)

            scaler.unscale_(optimizer)  # true gradient scale before clipping (a no-op unless fp16)
            # The norm is measured even without clipping (max_norm inf): a finite loss can still give inf/NaN
            # gradients, and one step with them ruins the weights. fp16's scaler handles its own overflows.
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm or math.inf)
            if not scaler.is_enabled() and not bool(torch.isfinite(grad_norm)):
                raise non_finite(f"the gradient norm is {grad_norm.item()} (loss {loss_value:.4g})", state.step + 1,
                                 last_checkpoint)
            lr = scheduler.get_last_lr()[0]
            scaler.step(optimizer)  # with fp16, skipped when gradients overflowed (the scale then shrinks)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            state.step += 1
            state.step_in_epoch += 1

            tokens = distributed.all_reduce_sum(
                {"tokens": sum(count_tokens(batch) for batch in micro_batches).to(device)})["tokens"].item()
            step_time = time.perf_counter() - step_started
            tokens_trained, training_time = tokens_trained + tokens, training_time + step_time
            record = {"step": state.step, "epoch": round(state.epoch + state.step_in_epoch / steps_per_epoch, 4),
                      "lr": lr, "loss": loss_value, **(losses if len(losses) > 1 else {}),
                      "tokens_per_s": tokens / step_time, "examples_per_s": examples_per_step / step_time,
                      "grad_norm": grad_norm.item()}

            last_step = state.step >= max_steps
            evaluating = evaluation is not None and (
                last_step or (args.eval_every > 0 and state.step % args.eval_every == 0))
            improved = False
            if evaluating:
                with autocast:  # rank 0 evaluates; the others wait for its metrics, so all decide alike
                    eval_metrics = distributed.broadcast_from_main(
                        task.evaluate(raw_model, evaluation) if processes.is_main else None)
                record.update({f"eval_{name}": value for name, value in eval_metrics.items()})
                if args.keep_best_metric:
                    improved = update_best(state, eval_metrics, args)
                    stopped_early = (args.early_stopping_patience is not None
                                     and state.evals_without_improvement >= args.early_stopping_patience)
            stop = last_step or stopped_early

            if metrics_log is not None and (state.step % args.log_every == 0 or evaluating or stop):
                metrics_log.write(record)  # before saving: a checkpoint never runs ahead of metrics.jsonl
            if stop or improved or (args.save_every and state.step % args.save_every == 0):
                last_checkpoint = checkpointing.save(
                    output_dir, state, raw_model, optimizer, scheduler, scaler, args, data_order, processes,
                    last=last_checkpoint, before_commit=metrics_log.commit if metrics_log is not None else None)
            progress.update(record)
            if args.plot and processes.is_main and (evaluating or stop):
                plot_curves(metrics_log.path, output_dir / "curves.png")
            if stop:
                break
        if not stop:  # the epoch's last step is done
            state.epoch, state.step_in_epoch = state.epoch + 1, 0

    progress.close()
    distributed.on_main(processes, lambda: raw_model.save_pretrained(output_dir / "final"))
    distributed.teardown(processes)
    return TrainResult(final_metrics=eval_metrics, train_loss=loss_value, best_metric=state.best_metric,
                       best_step=state.best_step, steps=state.step, wall_time_s=time.perf_counter() - started,
                       tokens_per_s=tokens_trained / training_time if training_time else 0.0,
                       stopped_early=stopped_early, output_dir=output_dir)


def non_finite(what: str, step: int, last_checkpoint: Path | None) -> TrainingError:
    """The error that stops a run at a non-finite loss or gradient, before the weights change."""
    advice = (f"last good checkpoint: {last_checkpoint} (resume from it with {spelled('resume')} and a lower "
              f"{spelled('learning_rate')})" if last_checkpoint else
              f"no checkpoint yet (start again with a lower {spelled('learning_rate')})")
    return TrainingError(f"step {step}: {what}; stopped before updating the weights; {advice}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def count_tokens(batch: dict[str, Any]) -> torch.Tensor:
    """Real tokens in a batch: attention_mask's ones, or every position when there is no mask."""
    if "attention_mask" in batch:
        return batch["attention_mask"].sum()
    return torch.tensor(batch["input_ids"].numel())


def update_best(state: TrainState, metrics: dict[str, float], args: TrainingArguments) -> bool:
    """Track args.keep_best_metric; returns whether this evaluation is the best so far."""
    if args.keep_best_metric not in metrics:
        raise TrainingError(f"keep_best_metric {args.keep_best_metric!r} is not among the evaluation metrics "
                            f"({', '.join(metrics)})")
    value, best = metrics[args.keep_best_metric], state.best_metric
    if best is None or (value > best if args.higher_is_better() else value < best):
        state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
        return True
    state.evals_without_improvement += 1
    return False
