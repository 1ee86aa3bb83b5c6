"""AdamW with BERT's weight-decay exclusions, and the linear warm-up / linear decay learning-rate schedule."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

# BERT appendix A.2: Adam with beta1 = 0.9, beta2 = 0.999; the released code uses epsilon 1e-6.
BETAS = (0.9, 0.999)
EPS = 1e-6


def decays(module: nn.Module, param: nn.Parameter) -> bool:
    """Whether weight decay applies to `param`, a parameter of `module` itself.

    BERT's code excluded parameters by name ("LayerNorm", "bias"): decay pulls a weight matrix towards zero, which
    regularises it, but pulling a LayerNorm gain towards zero (or a bias anywhere) only shrinks activations. We
    decide by what the parameter is rather than what it is called: anything owned by an nn.LayerNorm, and any 1-D
    parameter (every bias, the MLM head's output bias included, and gains of layers we may not know by type).
    Weight matrices and embedding tables decay."""
    return not (isinstance(module, nn.LayerNorm) or param.ndim < 2)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights, and everything `decays` exempts. A tied parameter appears once."""
    decayed, exempt, seen = [], [], set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                (decayed if decays(module, param) else exempt).append(param)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`, with the fused update where this torch has one for the parameters' device.

    Fused: one kernel per tensor does the whole update, where the default (foreach) makes a pass over all the
    weights per operation; the arithmetic is AdamW's either way (the two differ by float rounding). Measured
    (benchmarks/results/pretraining_throughput.md): the cpu recipe's model (2 layers, hidden 128, a 16k
    vocabulary), one CPU thread: 5 against 13 CPU ms per update, ~4% of a 211 ms training step."""
    groups = parameter_groups(model, weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=learning_rate, betas=BETAS, eps=EPS, fused=True)
    except RuntimeError:  # no fused kernel for this device in this torch (CPU before torch 2.4)
        return torch.optim.AdamW(groups, lr=learning_rate, betas=BETAS, eps=EPS)


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """lr(step) = peak * step / warmup while warming up, then falls linearly to 0 at `total_steps`.

    As in BERT and transformers' get_linear_schedule_with_warmup, the first step of a warm-up runs at lr 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, factor)


def set_schedule(optimizer: torch.optim.Optimizer, scheduler: LambdaLR, learning_rate: float,
                 weight_decay: float) -> None:
    """Make a restored optimizer and scheduler follow this run's peak learning rate, schedule and weight decay
    from the step they are at. The schedule's shape comes from `scheduler`'s lambdas (built from this run's
    arguments); a checkpoint restores only the step and the peak rate it was saved with, which a resumed run with
    a new learning rate (recovering from a divergence) or more steps must replace, not keep."""
    scheduler.base_lrs = [learning_rate] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = learning_rate
        group["lr"] = learning_rate * factor(scheduler.last_epoch)
    optimizer.param_groups[0]["weight_decay"] = weight_decay  # the decayed group (see parameter_groups)
    for group in optimizer.param_groups:  # the update's implementation is this run's choice (build_optimizer) too
        group["fused"], group["foreach"] = optimizer.defaults["fused"], optimizer.defaults["foreach"]
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
