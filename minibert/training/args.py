"""TrainingArguments: every knob of a run, in one dataclass that is stored (as JSON) in each checkpoint."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from minibert.errors import TrainingError, spelled

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


@dataclass
class TrainingArguments:
    output_dir: str
    # Length: `max_steps` optimizer steps when given, else `num_epochs` passes over the training set.
    max_steps: int | None = None
    num_epochs: int = 1
    # One optimizer step sees per_device_batch_size * grad_accumulation_steps * world_size examples.
    per_device_batch_size: int = 32
    grad_accumulation_steps: int = 1
    # AdamW with linear warm-up then linear decay to 0 (BERT appendix A.2: lr 1e-4, 10k warm-up steps, decay 0.01).
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # alternative to warmup_steps: a fraction of the total steps
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0  # 0 or None: no clipping (0 as in transformers)
    # "bf16": autocast on CPU or CUDA; "fp16": autocast + loss scaling, CUDA only; "auto": bf16 where a probe of
    # the first step shows it faster here, else fp32 (training/precision.py)
    precision: str = "fp32"
    device: str | None = None  # None: cuda if available, else cpu
    # Cadence, in optimizer steps; 0 = only at the end of the run.
    eval_every: int = 0
    save_every: int = 0
    log_every: int = 10
    # Model selection: `keep_best_metric` names a key of task.evaluate()'s result ("loss", "accuracy", ...).
    keep_best_metric: str | None = None
    greater_is_better: bool | None = None  # None: lower is better when the name contains "loss" or "perplexity"
    early_stopping_patience: int | None = None  # stop after this many evaluations without improvement
    seed: int = 0
    resume: bool = False  # continue from output_dir/checkpoints (an error when there is none)
    # A new run in a folder that holds an earlier run's checkpoints, metrics or final model is refused unless this
    # is set (as in transformers' Trainer scripts); the earlier files are replaced only as the new ones are saved.
    overwrite_output_dir: bool = False
    num_workers: int = 0  # DataLoader worker processes; results do not depend on it
    progress_bar: bool | None = True  # True: a tqdm bar; False: a line every log_every steps; None: silent
    plot: bool = True  # output_dir/curves.png, when matplotlib is installed

    def __post_init__(self) -> None:
        self._check_values()
        self._check_combinations()

    def _check_values(self) -> None:
        """Each setting on its own: counts are integers in range, rates finite numbers, names known."""
        for name in ("num_epochs", "per_device_batch_size", "grad_accumulation_steps", "log_every"):
            _check_integer(name, getattr(self, name))
        for name in ("warmup_steps", "eval_every", "save_every", "seed", "num_workers"):
            _check_integer(name, getattr(self, name), allow_zero=True)
        if self.max_steps is not None:
            _check_integer("max_steps", self.max_steps)
        _check_number("learning_rate", self.learning_rate, 0.0)  # 0: a run that only evaluates, or a test's
        _check_number("weight_decay", self.weight_decay, 0.0)
        if self.precision not in PRECISIONS:
            raise TrainingError(f"TrainingArguments: precision must be one of {', '.join(PRECISIONS)}, "
                                f"got {self.precision!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise TrainingError(f"{spelled('warmup_ratio')} must be in [0, 1), got {self.warmup_ratio!r}")
        if self.max_grad_norm is not None:
            _check_number("max_grad_norm", self.max_grad_norm, 0.0)
        if self.early_stopping_patience is not None:
            _check_integer("early_stopping_patience", self.early_stopping_patience)

    def _check_combinations(self) -> None:
        """Settings that exclude or need each other."""
        if self.warmup_steps and self.warmup_ratio:
            raise TrainingError(f"give {spelled('warmup_steps')} or {spelled('warmup_ratio')}, not both")
        if self.early_stopping_patience is not None and self.keep_best_metric is None:
            raise TrainingError(f"{spelled('early_stopping_patience')} needs keep_best_metric (a metric to "
                                "watch, on an evaluation set)")
        if self.resume and self.overwrite_output_dir:
            raise TrainingError(f"give {spelled('resume')} (continue the run in {self.output_dir}) or "
                                f"{spelled('overwrite_output_dir')} (replace it), not both")

    def warmup_for(self, total_steps: int) -> int:
        return self.warmup_steps or math.ceil(self.warmup_ratio * total_steps)

    def higher_is_better(self) -> bool:
        if self.greater_is_better is not None:
            return self.greater_is_better
        name = (self.keep_best_metric or "").lower()
        return not ("loss" in name or "perplexity" in name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_integer(name: str, value: Any, allow_zero: bool = False) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        bound = "an integer >= 0" if allow_zero else "a positive integer"
        raise TrainingError(f"{spelled(name)} must be {bound}, got {value!r}")


def _check_number(name: str, value: Any, low: float) -> None:
    """A finite number >= low."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not value >= low:
        raise TrainingError(f"{spelled(name)} must be a number >= {low:g}, got {value!r}")
