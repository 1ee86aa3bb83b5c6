"""precision="auto": bf16 autocast only where a short probe of the run's own training step shows it faster.

Whether bf16 pays depends on the machine. CPUs with bf16 matrix instructions (AVX-512 BF16, AMX) and recent GPUs
run bf16 products several times faster than fp32; an AVX2-only CPU has no bf16 arithmetic, oneDNN emulates it,
and a training step runs ~10x slower than in fp32 (products ~100x). A CPU flag says what the hardware has, not
what this step gains (shapes, memory-bound work, the torch build), so the choice is measured on the run's model,
batch and device:

1. one training step (forward and backward of a real batch) in fp32, after a warm-up step, and one optimizer
   update on copies of the weights; with the chosen precision's step, they give the run's expected duration;
2. a screen: the model's largest Linear on a slab of token rows, in fp32 and in bf16. Where bf16 is emulated
   this costs a fraction of a second, where a bf16 step would cost ten fp32 steps, and settles on fp32;
3. otherwise a bf16 step, after a warm-up step: bf16 is chosen when it is at least MARGIN times faster.

On a CPU the probe compares CPU time, not wall-clock time: the work a step needs is what differs between the
precisions, and it hardly moves when other processes share the cores, while wall-clock times of single steps on a
busy machine were seen to swing by 2x and flip the choice (MiniLM, 1 thread: 0.62 s of CPU in fp32 and 0.41 s in
bf16 in each of 4 probes, wall-clock 1.2-2.1 s and 0.8-1.5 s). A GPU's steps are timed by the clock.

The probe leaves the model's weights, its gradients and the random generators as it found them. Under torchrun
every process uses rank 0's choice. auto chooses between fp32 and bf16 only (fp16 needs loss scaling and is asked
for by name).
"""

from __future__ import annotations

import math
import random
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from minibert.plumbing.machine import machine_facts
from minibert.training.processes import broadcast_from_main
from minibert.training.task import to_device

AUTO = "auto"
MARGIN = 1.2  # bf16 rounds more, so it must buy a clear speed-up; a tie or timing noise keeps fp32
SCREEN_SLOWER = 2.0  # products this many times slower in bf16: emulated, no bf16 step is worth timing
SCREEN_FLOP = 50e6  # per product in the screen: ~0.2 ms in fp32, ~25 ms where bf16 is emulated


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # "fp32" or "bf16"
    reason: str
    step_s: dict[str, float] = field(default_factory=dict)  # seconds of forward and backward, by precision measured
    update_s: float = 0.0  # seconds of one clipped AdamW update of all the weights

    @property
    def seconds_per_step(self) -> float | None:
        """The chosen precision's measured forward and backward of one micro-batch."""
        return self.step_s.get(self.precision)

    def expected_s(self, steps: int, micro_batches: int = 1) -> float | None:
        """Seconds that `steps` optimizer steps of `micro_batches` micro-batches each should take (no evaluation)."""
        if self.seconds_per_step is None:
            return None
        return steps * (micro_batches * self.seconds_per_step + self.update_s)

    def line(self) -> str:
        return f"precision auto -> {self.precision}: {self.reason}"


def autocast(precision: str, device: torch.device):
    """The autocast context of a concrete precision (fp32: none)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def decide(fp32_s: float, bf16_s: float, margin: float = MARGIN) -> bool:
    """Whether a bf16 step of bf16_s seconds beats an fp32 step of fp32_s seconds by the margin."""
    return bf16_s * margin <= fp32_s


def screen_rejects(fp32_s: float, bf16_s: float) -> bool:
    """Whether bf16 products are so much slower than fp32 ones (emulated bf16) that no step needs timing."""
    return bf16_s >= SCREEN_SLOWER * fp32_s


def probe(step: Callable[[], Any], model: nn.Module, device: torch.device, tokens: int) -> PrecisionChoice:
    """Choose fp32 or bf16 for `step` (a callable that runs the real forward and backward of one micro-batch of
    `model`, with `tokens` rows of tokens, under whatever autocast is active). See the module docstring."""
    where = _where(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return PrecisionChoice("fp32", f"{torch.cuda.get_device_name(device)} has no bf16 support")
    if device.type not in ("cpu", "cuda"):
        return PrecisionChoice("fp32", f"no bf16 probe for {device.type} devices")
    took = "used" if device.type == "cpu" else "took"
    unit = " of CPU time" if device.type == "cpu" else ""
    with _untouched(model, device):
        fp32_wall_s, fp32_s = _time_step(step, "fp32", device)
        update_s = _time_update(model, device)
        product_s = _time_products(model, device, tokens)
        if screen_rejects(**product_s):
            return PrecisionChoice("fp32", f"a bf16 matrix product of this model {took} "
                                           f"{product_s['bf16_s'] * 1e3:.1f} ms{unit} vs "
                                           f"{product_s['fp32_s'] * 1e3:.2f} ms in fp32 (bf16 is emulated here; "
                                           f"{where})", {"fp32": fp32_wall_s}, update_s)
        bf16_wall_s, bf16_s = _time_step(step, "bf16", device)
    chosen = "bf16" if decide(fp32_s, bf16_s) else "fp32"
    verdict = "" if chosen == "bf16" or bf16_s >= fp32_s else f", less than {MARGIN:g}x faster"
    return PrecisionChoice(chosen, f"a training step {took} {bf16_s:.3g} s{unit} in bf16 vs {fp32_s:.3g} s in fp32"
                                   f"{verdict} ({where})", {"fp32": fp32_wall_s, "bf16": bf16_wall_s}, update_s)


def resolve_precision(args, model: nn.Module, task, train_dataset, collate_fn, device: torch.device,
                      total_steps: int | None = None) -> str:
    """args.precision, or for "auto" the probe's choice on the run's first batch, printed (rank 0) as one line
    with the expected training time. Every process gets rank 0's choice."""
    if args.precision != AUTO:
        return args.precision
    with _random_state_kept(device):  # reading examples may draw (dynamic masking); the run's draws stay its own
        batch = to_device(collate_fn([train_dataset[i] for i in range(min(args.per_device_batch_size,
                                                                           len(train_dataset)))]), device)
    tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()

    def step() -> None:
        terms = task.loss_terms(model, batch)
        sum(total / max(int(count), 1) for total, count in terms.values()).backward()

    choice = broadcast_from_main(probe(step, model, device, tokens))
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        print(choice.line() + _expected(choice, total_steps, args.grad_accumulation_steps), file=sys.stderr,
              flush=True)
    return choice.precision


def _expected(choice: PrecisionChoice, total_steps: int | None, micro_batches: int) -> str:
    seconds = choice.expected_s(total_steps, micro_batches) if total_steps else None
    return "" if seconds is None else f"; {total_steps} steps: about {format_duration(seconds)} of training"


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _where(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    facts = machine_facts()
    return f"CPU capability {facts.cpu_capability}, native bf16 {'yes' if facts.native_bf16 else 'no'}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _work_clock(device: torch.device) -> Callable[[], float]:
    """The clock the decision reads (module docstring): this process's CPU time on a CPU, else the wall clock."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def _time_step(step: Callable[[], Any], precision: str, device: torch.device) -> tuple[float, float]:
    """(wall-clock, work) seconds of one step in `precision`, after one warm-up step (first-call allocations,
    kernel selection); work is read on _work_clock."""
    work_clock = _work_clock(device)
    for _ in range(2):
        _sync(device)
        started, work_started = time.perf_counter(), work_clock()
        with autocast(precision, device):
            step()
        _sync(device)
    return time.perf_counter() - started, work_clock() - work_started


def _time_update(model: nn.Module, device: torch.device) -> float:
    """Seconds of one gradient clipping and AdamW update over copies of the model's trainable weights (the second
    update: the first creates the optimizer's state). The copies keep the model itself untouched."""
    weights = [p.detach().clone().requires_grad_() for p in model.parameters() if p.requires_grad]
    for weight in weights:
        weight.grad = torch.zeros_like(weight)
    optimizer = torch.optim.AdamW(weights, lr=1e-4)
    times = []
    for _ in range(2):
        _sync(device)
        started = time.perf_counter()
        nn.utils.clip_grad_norm_(weights, 1.0)
        optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - started)
    return times[-1]


def _time_products(model: nn.Module, device: torch.device, tokens: int) -> dict[str, float]:
    """Best-of-3 work seconds (_work_clock) of the model's largest Linear applied to a slab of rows, in fp32 and bf16
    (keys fp32_s, bf16_s). The slab has at most `tokens` rows and ~SCREEN_FLOP multiply-adds, so it stays short."""
    linear = max((m for m in model.modules() if isinstance(m, nn.Linear)), key=lambda m: m.weight.numel())
    rows = max(16, min(tokens, math.ceil(SCREEN_FLOP / (2 * linear.weight.numel()))))
    x = torch.randn(rows, linear.in_features, device=device, generator=torch.Generator(device).manual_seed(0))
    seconds, clock = {}, _work_clock(device)
    with torch.no_grad():
        for precision in ("fp32", "bf16"):
            times = []
            for _ in range(4):  # the first run is a warm-up
                _sync(device)
                started = clock()
                with autocast(precision, device):
                    linear(x)
                _sync(device)
                times.append(clock() - started)
            seconds[f"{precision}_s"] = min(times[1:])
    return seconds


@contextmanager
def _random_state_kept(device: torch.device) -> Iterator[None]:
    """Python's, NumPy's and torch's generators as they were before the block."""
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])


@contextmanager
def _untouched(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Run the probe without a trace: random generators restored (dropout draws from them), gradients dropped,
    train/eval mode kept."""
    was_training = model.training
    with _random_state_kept(device):
        try:
            yield model.train()
        finally:
            for parameter in model.parameters():
                parameter.grad = None
            model.train(was_training)
