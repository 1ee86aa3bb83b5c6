"""What the training loop asks of a task, and the helpers tasks share.

A task turns a batch into losses and a held-out loader into metrics. The loop calls three methods:

- `counts(batch) -> {term: count}`: how many items each loss term of the batch averages over (masked tokens,
  sequences, labelled tokens), read from the batch alone, without a forward pass;
- `loss_terms(model, batch) -> {term: (sum, count)}`: each term's *sum* over the batch (`reduction="sum"`);
- `evaluate(model, loader) -> {metric: float}`.

Why sums and counts, not a mean loss: one optimizer step can span several micro-batches (gradient accumulation)
and several processes (DDP), whose counts differ (the number of masked tokens varies from batch to batch).
Averaging per micro-batch and then averaging those averages would weight a token of a small micro-batch more than
one of a large micro-batch. The loop instead totals each term's count over the whole step before any forward
pass, then backpropagates sum / total for every micro-batch, so the gradient is exactly that of one big batch.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Protocol

import torch
from torch import Tensor, nn

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")

Batch = dict[str, Any]


class Task(Protocol):
    def counts(self, batch: Batch) -> dict[str, Tensor | int]: ...

    def loss_terms(self, model: nn.Module, batch: Batch) -> dict[str, tuple[Tensor, Tensor | int]]: ...

    def evaluate(self, model: nn.Module, loader: Iterable[Batch]) -> dict[str, float]: ...


def model_inputs(batch: Batch) -> dict[str, Tensor]:
    """The encoder's inputs out of a batch that also holds labels (and, for some tasks, bookkeeping)."""
    return {name: batch[name] for name in MODEL_INPUTS if name in batch}


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[torch.device]:
    """Dropout off and no autograd graph for the block; the model's previous mode is restored after.
    Yields the device to move batches to."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)
