"""The training flags `minibert pretrain` and `minibert finetune` share, made once from TrainingArguments.

Each flag's dest is the TrainingArguments field it sets, and its default is None: a flag left out keeps the
command's default (a recipe's, fine-tuning's evaluation once per epoch, else the dataclass default, which the help
shows). So the flags given pass straight to TrainingArguments, and both commands spell each setting alike. The
first spelling of a flag is the one --help shows; the others are older spellings kept working. Hugging Face
TrainingArguments' spellings (`--learning_rate`, `--per_device_train_batch_size`, `--num_train_epochs`, ...) are
accepted too, so a command line written for transformers' example scripts runs; --help leaves them out, and an
error names the flag as it was typed (minibert.cli.main)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable

from minibert.cli.arg_types import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from minibert.training.args import PRECISIONS, TrainingArguments


@dataclasses.dataclass(frozen=True)
class Flag:
    spellings: tuple[str, ...]
    type: Callable[[str], Any] | None  # None: choices, or a store_true switch
    help: str
    choices: tuple[str, ...] | None = None
    switch: bool = False  # store_true
    default: str | None = None  # the default in words, where TrainingArguments' value would not say it
    hf: tuple[str, ...] = ()  # transformers' TrainingArguments spellings of the same setting, accepted as aliases

    @property
    def metavar(self) -> str:
        return self.spellings[0].lstrip("-").upper().replace("-", "_")


# TrainingArguments field -> its flag, in the order --help lists them.
FLAGS: dict[str, Flag] = {
    "max_steps": Flag(("--max-steps",), positive_int, "optimizer steps",
                      default="default: --epochs passes over the data", hf=("--max_steps",)),
    "num_epochs": Flag(("--epochs",), positive_int, "passes over the training set",
                       hf=("--num_train_epochs", "--num-train-epochs")),
    "per_device_batch_size": Flag(("--batch-size",), positive_int, "examples per device per micro-batch",
                                  hf=("--per_device_train_batch_size", "--per-device-train-batch-size")),
    "grad_accumulation_steps": Flag(("--grad-accumulation", "--grad-accum"), positive_int,
                                    "micro-batches per optimizer step",
                                    hf=("--gradient_accumulation_steps", "--gradient-accumulation-steps")),
    "learning_rate": Flag(("--lr",), positive_float, "peak learning rate (AdamW)",
                          hf=("--learning_rate", "--learning-rate")),
    "warmup_steps": Flag(("--warmup-steps",), non_negative_int, "steps of linear warm-up (excludes --warmup-ratio)",
                         hf=("--warmup_steps",)),
    "warmup_ratio": Flag(("--warmup-ratio",), fraction, "warm-up as a share of all steps", hf=("--warmup_ratio",)),
    "weight_decay": Flag(("--weight-decay",), non_negative_float, "AdamW weight decay", hf=("--weight_decay",)),
    "max_grad_norm": Flag(("--max-grad-norm",), non_negative_float,
                          "clip the gradients' global norm to this before each update (0: no clipping)",
                          hf=("--max_grad_norm",)),
    "precision": Flag(("--precision",), None, "auto: bf16 where a probe of the first step shows it faster here (on "
                      "a CPU without native bf16, bf16 is ~10x slower)", choices=PRECISIONS, default="default fp32"),
    "eval_every": Flag(("--eval-every",), non_negative_int, "steps between evaluations (0: at the end only)",
                       hf=("--eval_steps", "--eval-steps")),
    "save_every": Flag(("--save-every",), non_negative_int, "steps between checkpoints (0: at the end only)",
                       hf=("--save_steps", "--save-steps")),
    "log_every": Flag(("--log-every",), positive_int,
                      "steps between metrics.jsonl lines and --no-progress log lines",
                      hf=("--logging_steps", "--logging-steps")),
    "early_stopping_patience": Flag(("--early-stopping",), positive_int,
                                    "stop after this many evaluations without improvement of the kept metric",
                                    hf=("--early_stopping_patience",)),
    "seed": Flag(("--seed",), non_negative_int, "model init, data order and dropout"),
    "device": Flag(("--device",), str, "cpu, cuda, cuda:1", default="default: cuda if available"),
    "num_workers": Flag(("--num-workers",), non_negative_int, "DataLoader worker processes",
                        hf=("--dataloader_num_workers",)),
    "resume": Flag(("--resume",), None, "continue from the last checkpoint in --output-dir (an error when there is "
                   "none); a changed --lr, --max-steps or --epochs is applied and said", switch=True),
    "overwrite_output_dir": Flag(("--overwrite-output-dir",), None, "start a new run in an --output-dir that holds an "
                                 "earlier one (its files are replaced as the new run saves its own)", switch=True,
                                 hf=("--overwrite_output_dir",)),
}
# transformers' precision switches, as aliases of --precision.
HF_PRECISION_SWITCHES = {"--bf16": "bf16", "--fp16": "fp16"}
# Flags that exclude each other, by field (each pair in one mutually exclusive group).
EXCLUSIVE = (("max_steps", "num_epochs"), ("warmup_steps", "warmup_ratio"), ("resume", "overwrite_output_dir"))
DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainingArguments)}


def add_training_arguments(parser: argparse.ArgumentParser, title: str = "training", *,
                           leave_out: tuple[str, ...] = (), defaults: dict[str, str] | None = None) -> None:
    """The training flags as one argument group. `leave_out` names fields the command has no use for; `defaults`
    says in words a default the command sets itself (field -> "default: ..."), instead of TrainingArguments'."""
    group = parser.add_argument_group(title)
    exclusive = {}
    for pair in EXCLUSIVE:
        if not set(pair) & set(leave_out):
            shared = group.add_mutually_exclusive_group()
            exclusive.update(dict.fromkeys(pair, shared))
    for field, flag in FLAGS.items():
        if field in leave_out:
            continue
        target = exclusive.get(field, group)
        if flag.switch:
            target.add_argument(*flag.spellings, dest=field, action="store_true", default=None, help=flag.help)
            if flag.hf:
                target.add_argument(*flag.hf, dest=field, action="store_true", default=None, help=argparse.SUPPRESS)
            continue
        said = (defaults or {}).get(field) or flag.default or f"default {DEFAULTS[field]}"
        target.add_argument(*flag.spellings, dest=field, type=flag.type, choices=flag.choices, default=None,
                            metavar=None if flag.choices else flag.metavar, help=f"{flag.help} ({said})")
        if flag.hf:
            target.add_argument(*flag.hf, dest=field, type=flag.type, choices=flag.choices, default=None,
                                help=argparse.SUPPRESS)
    for switch, precision in HF_PRECISION_SWITCHES.items():
        group.add_argument(switch, dest="precision", action="store_const", const=precision, help=argparse.SUPPRESS)
    group.add_argument("--no-progress", action="store_true",
                       help="log a line every --log-every steps instead of a progress bar")


def given_training_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainingArguments fields the flags given on the command line set."""
    return {field: getattr(args, field) for field in FLAGS if getattr(args, field, None) is not None}
