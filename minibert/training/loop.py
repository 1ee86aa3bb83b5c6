"""train(): the one training loop, for pretraining and fine-tuning alike.

It reads in the order a run goes: `train` holds the output folder and starts the processes; `check_arguments`
and `plan_steps` (how much a step reads, how many steps) come first; `Run` sets up (model on its device,
optimizer and schedule, precision, resume, DDP), then `Run.train` goes through epochs of `Run.optimizer_step`
(micro-batches counted, forward and backward, the loss checked, gradients clipped and checked, weights updated:
`OptimizerStep`, which pretraining's time budget reuses) and `Run.after_step` (log, evaluate, save). What a task
computes lives with it (minibert.pretraining.objective, minibert.finetuning.objective; the interface in task.py);
which examples a step reads in batches.py; the rest in optim.py, train_state.py, processes.py, reporting.py
and curves.py, one job each.
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from minibert.errors import DivergedError, TrainingError, spelled
from minibert.training import train_state
from minibert.training.args import TrainingArguments
from minibert.training.batches import EpochBatches, eval_loader, train_loader
from minibert.training.train_state import TrainState
from minibert.training.curves import plot_curves
from minibert.training.fingerprint import dataset_fingerprint
from minibert.training.optim import build_optimizer, linear_warmup_decay, set_schedule
from minibert.training.processes import (Processes, all_reduce_sum, broadcast_from_main, end_processes,
                                         on_main, start_processes)
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
    precision: str = "fp32"  # what the steps ran in ("auto" resolved)


def train(model: nn.Module, task: Task, train_dataset: Dataset, eval_dataset: Dataset | None,
          args: TrainingArguments, collate_fn: Callable[[list], dict[str, Any]]) -> TrainResult:
    """Train `model` on `task` (see task.py); under torchrun, one process per device, data-parallel.

    Writes to args.output_dir: checkpoints/ (see train_state.py), metrics.jsonl, curves.png, and final/ (the
    trained model, `save_pretrained` format). The folder is locked for the run (one run at a time); a new run over
    an earlier one needs args.overwrite_output_dir, and replaces its files only as it saves its own."""
    started = time.perf_counter()
    processes = start_processes(args.device)
    with hold_output_dir(Path(args.output_dir), processes, check=lambda: check_output_dir(args)):
        return _train(model, task, train_dataset, eval_dataset, args, collate_fn, processes, started)


def _train(model: nn.Module, task: Task, train_dataset: Dataset, eval_dataset: Dataset | None,
           args: TrainingArguments, collate_fn: Callable[[list], dict[str, Any]], processes: Processes,
           started: float) -> TrainResult:
    check_arguments(args, eval_dataset, processes.device)
    seed_everything(args.seed + processes.rank)  # dropout differs between ranks, as in nanoGPT
    plan = plan_steps(args, train_dataset, processes.world_size)
    run = Run(model, task, train_dataset, eval_dataset, args, collate_fn, processes, plan)
    run.train()
    on_main(processes, lambda: run.raw_model.save_pretrained(run.output_dir / "final"))
    end_processes(processes)
    return run.result(started)


def check_arguments(args: TrainingArguments, eval_dataset: Dataset | None, device: torch.device) -> None:
    """What the arguments cannot ask for with this device and data, refused before any work."""
    if args.precision == "fp16" and device.type != "cuda":
        raise TrainingError(f"{spelled('precision')} fp16 needs a CUDA device (loss scaling is for its kernels); use "
                            "bf16 on CPU")
    if args.keep_best_metric and eval_dataset is None:
        raise TrainingError(f"keep_best_metric {args.keep_best_metric!r} needs an eval_dataset")


@dataclass(frozen=True)
class StepPlan:
    """How much one optimizer step reads and how many steps the run takes."""
    micro_batches: int  # per process and step (gradient accumulation)
    examples_per_step: int  # over all micro-batches and processes
    steps_per_epoch: int
    max_steps: int
    data_order: dict[str, Any]  # what resuming must find again (train_state.py)


def plan_steps(args: TrainingArguments, train_dataset: Dataset, world: int) -> StepPlan:
    """One optimizer step reads k micro-batches on each of `world` processes (batches.py fixes which examples)."""
    k = args.grad_accumulation_steps
    examples_per_step = args.per_device_batch_size * k * world
    steps_per_epoch = len(train_dataset) // examples_per_step
    if steps_per_epoch == 0:
        raise TrainingError(f"the training set has {len(train_dataset)} examples, fewer than one optimizer step "
                            f"reads ({examples_per_step} = {spelled('per_device_batch_size')} x "
                            f"{spelled('grad_accumulation_steps')} x {world} processes)")
    # The content hash tells other data of the same size (flipped labels) apart.
    data_order = {"seed": args.seed, "examples_per_step": examples_per_step, "num_examples": len(train_dataset),
                  "data_sha256": dataset_fingerprint(train_dataset)}
    return StepPlan(k, examples_per_step, steps_per_epoch, args.max_steps or args.num_epochs * steps_per_epoch,
                    data_order)


class OptimizerStep:
    """One optimizer step over a list of micro-batches, in three parts so the caller can check between them:
    `backward` (the loss and its gradients, accumulated), `clip` (the gradient norm), `update` (the weights and
    the learning rate). The loop uses it, and so does pretraining's time budget (its probe times these steps).

    `world` is the number of processes sharing the step: with 1, no collective is called (a probe that runs on
    rank 0 alone must not wait for the others)."""

    def __init__(self, model: nn.Module, task: Task, optimizer: torch.optim.Optimizer, scheduler, scaler,
                 autocast, device: torch.device, world: int, max_grad_norm: float | None):
        self.model, self.task, self.optimizer, self.scheduler, self.scaler = model, task, optimizer, scheduler, scaler
        self.autocast, self.device, self.world, self.max_grad_norm = autocast, device, world, max_grad_norm

    def sum_over_processes(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return all_reduce_sum(values) if self.world > 1 else values

    def backward(self, micro_batches: list[dict[str, Any]]) -> dict[str, float]:
        """Forward and backward every micro-batch; returns the step's loss per term, {"<term>_loss": mean}.

        Exact loss normalisation (task.py): each term's count over the whole step, all micro-batches and all
        ranks, is read off the batches before any forward pass; each micro-batch backpropagates its sums divided
        by those totals, so the step's gradient is that of one batch of all the step's examples."""
        counts = [self.task.counts(batch) for batch in micro_batches]
        totals = self.sum_over_processes(
            {name: sum(torch.as_tensor(c[name], dtype=torch.int64, device=self.device) for c in counts)
             for name in counts[0]})
        denominators = {name: total.clamp(min=1) for name, total in totals.items()}
        sums = {name: torch.zeros((), device=self.device) for name in totals}
        for i, batch in enumerate(micro_batches):
            # Under DDP, gradients are all-reduced once, after the last micro-batch.
            syncing = self.world == 1 or i == len(micro_batches) - 1
            with nullcontext() if syncing else self.model.no_sync():
                with self.autocast:
                    terms = self.task.loss_terms(self.model, batch)
                    # DDP averages gradients over ranks; the factor `world` turns that average into the sum.
                    loss = self.world * sum(term_sum / denominators[name] for name, (term_sum, _) in terms.items())
                self.scaler.scale(loss).backward()
            for name, (term_sum, _) in terms.items():
                sums[name] += term_sum.detach().float()
        sums = self.sum_over_processes(sums)  # the global loss, not rank 0's share
        return {f"{name}_loss": (sums[name] / denominators[name]).item() for name in sums}

    def clip(self) -> torch.Tensor:
        """The gradient norm, after clipping to max_grad_norm. It is measured even without clipping (max_norm inf):
        a finite loss can still give inf/NaN gradients, and one step with them ruins the weights."""
        self.scaler.unscale_(self.optimizer)  # true gradient scale before clipping (a no-op unless fp16)
        return nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm or math.inf)

    def update(self) -> float:
        """Step the weights and the schedule; returns the learning rate the step used."""
        lr = self.scheduler.get_last_lr()[0]
        self.scaler.step(self.optimizer)  # with fp16, skipped when gradients overflowed (the scale then shrinks)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return lr


class Run:
    """One call of train(), in the order a run goes: set up (the model on its device, optimizer and schedule,
    precision, resume, DDP), then epochs of optimizer steps, each followed by logging, evaluation and saving.
    Everything that changes while training lives here."""

    def __init__(self, model: nn.Module, task: Task, train_dataset: Dataset, eval_dataset: Dataset | None,
                 args: TrainingArguments, collate_fn: Callable[[list], dict[str, Any]], processes: Processes,
                 plan: StepPlan):
        self.task, self.train_dataset, self.args, self.collate_fn = task, train_dataset, args, collate_fn
        self.processes, self.plan, self.output_dir = processes, plan, Path(args.output_dir)
        device = processes.device
        model.to(device)
        self.raw_model = model  # DDP wraps the model below; saving, evaluation and the config use the model itself
        self.optimizer = build_optimizer(model, args.learning_rate, args.weight_decay)
        self.scheduler = linear_warmup_decay(self.optimizer, args.warmup_for(plan.max_steps), plan.max_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")  # pass-through unless fp16
        self.precision = resolve_precision(args, model, task, train_dataset, collate_fn, device, plan.max_steps)
        self.autocast = precision_autocast(self.precision, device)
        self.state, self.last_checkpoint = TrainState(), None
        if args.resume:  # check_output_dir made sure there is a checkpoint
            self.resume()
        if processes.world_size > 1:
            # Every parameter must get a gradient at every step (DDP waits for each); see PretrainingTask.loss_terms.
            model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.stepper = OptimizerStep(model, task, self.optimizer, self.scheduler, self.scaler, self.autocast, device,
                                     processes.world_size, args.max_grad_norm)
        self.model = model
        self.pin_memory = device.type == "cuda"
        self.evaluation = None if eval_dataset is None else eval_loader(
            eval_dataset, collate_fn, args.per_device_batch_size, args.seed, args.num_workers, self.pin_memory)
        self.metrics_log = MetricsLog(self.output_dir / "metrics.jsonl",
                                      self.state.step if self.last_checkpoint else None) if processes.is_main else None
        self.progress = Progress(processes.is_main and args.progress_bar is not None, bool(args.progress_bar),
                                 plan.max_steps, self.state.step, args.log_every)
        self.eval_metrics: dict[str, float] = {}
        self.loss_value, self.tokens_trained, self.training_time, self.stopped_early = None, 0.0, 0.0, False

    def resume(self) -> None:
        """Continue from the last checkpoint: weights, optimizer, schedule, scaler, data position."""
        args = self.args
        self.last_checkpoint = train_state.find(self.output_dir)
        self.state, saved_args = train_state.load(self.last_checkpoint, self.raw_model, self.optimizer,
                                                    self.scheduler, self.scaler, self.plan.data_order, self.processes)
        set_schedule(self.optimizer, self.scheduler, args.learning_rate, args.weight_decay)  # this run's schedule
        changed = describe_resume(saved_args, args, self.plan.steps_per_epoch, self.state.step,
                                  self.scheduler.get_last_lr()[0])
        if changed and self.processes.is_main:
            logger.warning(changed)

    def train(self) -> None:
        """Epochs of optimizer steps until max_steps, or until early stopping."""
        self.model.train()
        stop = self.state.step >= self.plan.max_steps
        while not stop:
            stop = self.train_epoch()
            if not stop:  # the epoch's last step is done
                self.state.epoch, self.state.step_in_epoch = self.state.epoch + 1, 0
        self.progress.close()

    def train_epoch(self) -> bool:
        """The rest of the current epoch (all of it, unless resuming inside it); returns whether the run stops."""
        args, state, processes = self.args, self.state, self.processes
        if hasattr(self.train_dataset, "set_epoch"):  # e.g. dynamic masking: fresh masks every epoch
            self.train_dataset.set_epoch(state.epoch)
        batches = EpochBatches(len(self.train_dataset), args.per_device_batch_size, self.plan.micro_batches,
                               processes.rank, processes.world_size, args.seed, state.epoch,
                               start_step=state.step_in_epoch)
        epoch_micro_batches = iter(train_loader(self.train_dataset, self.collate_fn, batches, args.num_workers,
                                                self.pin_memory))
        for _ in range(state.step_in_epoch, self.plan.steps_per_epoch):
            step_started = time.perf_counter()
            micro_batches = [to_device(next(epoch_micro_batches), processes.device)
                             for _ in range(self.plan.micro_batches)]
            record = self.optimizer_step(micro_batches, step_started)
            if self.after_step(record):
                return True
        return False

    def optimizer_step(self, micro_batches: list[dict[str, Any]], step_started: float) -> dict[str, Any]:
        """One step, stopped before the weights change when the loss or the gradient is not finite; returns the
        step's record for metrics.jsonl."""
        state, plan = self.state, self.plan
        losses = self.stepper.backward(micro_batches)
        self.loss_value = sum(losses.values())
        if not math.isfinite(self.loss_value):
            terms_text = ", ".join(f"{name}={value}" for name, value in losses.items())
            raise non_finite(f"the loss is {self.loss_value} ({terms_text})", state.step + 1, self.last_checkpoint)
        grad_norm = self.stepper.clip()
        if not self.scaler.is_enabled() and not bool(torch.isfinite(grad_norm)):  # fp16's scaler handles its own
            raise non_finite(f"the gradient norm is {grad_norm.item()} (loss {self.loss_value:.4g})", state.step + 1,
                             self.last_checkpoint)
        lr = self.stepper.update()
        state.step += 1
        state.step_in_epoch += 1
        tokens = all_reduce_sum({"tokens": sum(count_tokens(batch) for batch in micro_batches).to(
            self.processes.device)})["tokens"].item()
        step_time = time.perf_counter() - step_started
        self.tokens_trained, self.training_time = self.tokens_trained + tokens, self.training_time + step_time
        return {"step": state.step, "epoch": round(state.epoch + state.step_in_epoch / plan.steps_per_epoch, 4),
                "lr": lr, "loss": self.loss_value, **(losses if len(losses) > 1 else {}),
                "tokens_per_s": tokens / step_time, "examples_per_s": plan.examples_per_step / step_time,
                "grad_norm": grad_norm.item()}

    def after_step(self, record: dict[str, Any]) -> bool:
        """Evaluate, log, save and plot as the arguments ask after this step; returns whether the run stops."""
        args = self.args
        last_step = self.state.step >= self.plan.max_steps
        evaluating = self.evaluation is not None and self.due(args.eval_every, last_step)
        improved = self.evaluate(record) if evaluating else False
        stop = last_step or self.stopped_early
        if self.metrics_log is not None and (self.due(args.log_every) or evaluating or stop):
            self.metrics_log.write(record)  # before saving: a checkpoint never runs ahead of metrics.jsonl
        if stop or improved or self.due(args.save_every):
            self.save()
        self.progress.update(record)
        if args.plot and self.processes.is_main and (evaluating or stop):
            plot_curves(self.metrics_log.path, self.output_dir / "curves.png")
        return stop

    def due(self, every: int, last_step: bool = False) -> bool:
        """Whether the step just done is one of every `every` (0: never but at `last_step`)."""
        return last_step or (every > 0 and self.state.step % every == 0)

    def save(self) -> None:
        """A checkpoint of the step just done (train_state.py), committed with metrics.jsonl's lines."""
        self.last_checkpoint = train_state.save(
            self.output_dir, self.state, self.raw_model, self.optimizer, self.scheduler, self.scaler, self.args,
            self.plan.data_order, self.processes, last=self.last_checkpoint,
            before_commit=self.metrics_log.commit if self.metrics_log is not None else None)

    def evaluate(self, record: dict[str, Any]) -> bool:
        """Evaluate on the held-out set into `record`; track the best checkpoint and early stopping. Returns
        whether this evaluation is the best so far."""
        with self.autocast:  # rank 0 evaluates; the others wait for its metrics, so all decide alike
            self.eval_metrics = broadcast_from_main(
                self.task.evaluate(self.raw_model, self.evaluation) if self.processes.is_main else None)
        record.update({f"eval_{name}": value for name, value in self.eval_metrics.items()})
        if not self.args.keep_best_metric:
            return False
        improved = update_best(self.state, self.eval_metrics, self.args)
        self.stopped_early = (self.args.early_stopping_patience is not None
                              and self.state.evals_without_improvement >= self.args.early_stopping_patience)
        return improved

    def result(self, started: float) -> TrainResult:
        state = self.state
        return TrainResult(final_metrics=self.eval_metrics, train_loss=self.loss_value, best_metric=state.best_metric,
                           best_step=state.best_step, steps=state.step, wall_time_s=time.perf_counter() - started,
                           tokens_per_s=self.tokens_trained / self.training_time if self.training_time else 0.0,
                           stopped_early=self.stopped_early, output_dir=self.output_dir, precision=self.precision)


def non_finite(what: str, step: int, last_checkpoint: Path | None) -> DivergedError:
    """The error that stops a run at a non-finite loss or gradient, before the weights change."""
    advice = (f"last good checkpoint: {last_checkpoint} (resume from it with {spelled('resume')} and a lower "
              f"{spelled('learning_rate')})" if last_checkpoint else
              f"no checkpoint yet (start again with a lower {spelled('learning_rate')})")
    return DivergedError(f"step {step}: {what}; stopped before updating the weights; {advice}")


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
