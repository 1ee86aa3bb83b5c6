"""README.md beside a trained model (final/, best/): what it is, where it came from, how well it did, how it was made
and how to use it, in the layout of a Hugging Face model card (YAML metadata, then prose), so the folder explains
itself on disk and on the hub.

The figures name the machine they were measured on (CPU, torch's CPU capability, threads, precision): a model
card publishes figures like any other."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minibert.plumbing.atomic_files import atomic_write_text

# task -> (the pipeline task, transformers' Auto class), for the metadata and the usage snippets
PIPELINE_TAGS = {"classification": ("text-classification", "AutoModelForSequenceClassification"),
                 "regression": ("text-classification", "AutoModelForSequenceClassification"),
                 "ner": ("token-classification", "AutoModelForTokenClassification"),
                 "qa": ("question-answering", "AutoModelForQuestionAnswering"),
                 "pretraining": ("fill-mask", "AutoModelForMaskedLM")}

# The TrainingArguments a model card lists: those that shape the weights.
CARD_SETTINGS = ("num_epochs", "max_steps", "per_device_batch_size", "grad_accumulation_steps", "learning_rate",
                 "warmup_steps", "warmup_ratio", "weight_decay", "max_grad_norm", "precision", "seed")


@dataclass
class ModelCard:
    task: str  # a fine-tuning task kind, or "pretraining"
    base_model: str | None  # the checkpoint it started from; None: trained from scratch
    data: str  # what it was trained on, in words (files, or "a list of 120 records")
    metrics: dict[str, float] = field(default_factory=dict)  # held-out metrics of this model
    metrics_note: str = ""  # which evaluation the metrics come from
    labels: list[str] | None = None
    training: dict[str, Any] = field(default_factory=dict)  # the TrainingArguments that shaped the weights
    steps: int | None = None
    machine: str = ""  # MachineFacts.describe(), with the precision the run used
    note: str = ""  # a paragraph after the first, for what a reader must know before using the model
    transformers_use: str | None = None  # replaces the Auto-class lines under Use, for a head transformers' class
    # cannot read as trained (a mean-pooling sequence head: finetuning/mean_pooling.py)

    def render(self, folder: str) -> str:
        from minibert import __version__
        pipeline_tag, auto_class = PIPELINE_TAGS[self.task]
        if self.task == "pretraining":
            origin = f"pretraining continued from `{self.base_model}`" if self.base_model else "pretrained from scratch"
        else:
            origin = f"fine-tuned from `{self.base_model}`"
        lines = ["---", "library_name: transformers", f"pipeline_tag: {pipeline_tag}", "tags: [minibert, bert]",
                 *([f"base_model: {self.base_model}"] if self.base_model else []), "---", "",
                 f"# {folder}", "",
                 f"A BERT model for {self.task}, {origin} with minibert {__version__}. The folder loads in minibert "
                 "and in transformers (`from_pretrained`).", "", *([self.note, ""] if self.note else []),
                 "## Data", "", self.data, ""]
        if self.labels:
            lines += [f"Labels, in id order: {', '.join(f'`{label}`' for label in self.labels)}.", ""]
        lines += ["## Results", ""]
        if self.metrics:
            lines += [self.metrics_note, "", "| metric | value |", "|---|---|",
                      *(f"| {metric} | {value:.4f} |" for metric, value in self.metrics.items()), "",
                      f"Measured on {self.machine}.", ""]
        else:
            lines += ["No held-out evaluation (no validation data).", ""]
        lines += ["## How it was made", "", "```", invocation(), "```", ""]
        if self.training:
            lines += [f"{self.steps} optimizer steps; " + ", ".join(f"{k}={v}" for k, v in self.training.items())
                      + ".", ""]
        lines += ["## Use", "", "```python", "import minibert", "",
                  f"run = minibert.pipeline({pipeline_tag!r}, {str(folder)!r})", "```", "",
                  "or with transformers:", "", "```python"]
        if self.transformers_use is not None:
            lines += [self.transformers_use.rstrip("\n"), "```", ""]
        else:
            lines += [f"from transformers import AutoTokenizer, {auto_class}", "",
                      f"model = {auto_class}.from_pretrained({str(folder)!r})",
                      f"tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})", "```", ""]
        return "\n".join(lines)

    def write(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / "README.md"
        atomic_write_text(path, self.render(str(folder)))
        return path


def invocation() -> str:
    """How this process was started: the `minibert` command line, or the Python script that called the library."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if program in ("minibert", "__main__.py"):
        return shlex.join(["minibert", *sys.argv[1:]])
    return f"Python: {shlex.join([program, *sys.argv[1:]]) if program else 'an interactive session'}"
