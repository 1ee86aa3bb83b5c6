"""Fine-tuning tasks (BERT §4): sequence classification and regression, token classification, and extractive QA.

Each adapter sums the same loss its minibert head computes as a mean, so training through the loop optimises
exactly what `model(..., labels=...).loss` reports. Evaluation hands the task's predictions and references to a
`metric_fn(predictions, references) -> dict`, so a task plugs in its own metric (for instance one of
minibert.finetuning.metrics, or a closure that maps token ids back to words); each adapter has a simple default.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minibert.config import BertConfig
from minibert.training.task import IGNORE_INDEX, Batch, evaluation_mode, model_inputs, to_device, unwrap, upcast

MetricFn = Callable[[list, list], dict[str, float]]


def accuracy(predictions: list, references: list) -> dict[str, float]:
    """The fraction of predictions equal to their reference (a class id, or a whole multi-hot label vector)."""
    return {"accuracy": float(np.mean([p == r for p, r in zip(predictions, references)])) if references else 0.0}


class FineTuningTask:
    """The shared part: loss terms from the head's logits, and evaluation through `metric_fn`.

    A subclass says how many items each term averages over (`counts`), how to sum the loss (`sums`), and what to
    hand the metric (`predictions`: one prediction and one reference per sequence)."""

    def __init__(self, metric_fn: MetricFn | None = None):
        self.metric_fn = metric_fn

    def default_metrics(self, config: BertConfig) -> MetricFn:
        return accuracy

    def counts(self, batch: Batch) -> dict[str, Tensor | int]:
        raise NotImplementedError

    def sums(self, output, batch: Batch, config: BertConfig) -> dict[str, tuple[Tensor, Tensor | int]]:
        raise NotImplementedError

    def predictions(self, output, batch: Batch, config: BertConfig) -> tuple[list, list]:
        raise NotImplementedError

    def forward(self, model: nn.Module, batch: Batch):
        """The head's output for a batch; one place, so that training and evaluation run the model alike."""
        return model(**model_inputs(batch))

    def loss_terms(self, model: nn.Module, batch: Batch) -> dict[str, tuple[Tensor, Tensor | int]]:
        return self.sums(self.forward(model, batch), batch, unwrap(model).config)

    def evaluate(self, model: nn.Module, loader: Iterable[Batch]) -> dict[str, float]:
        """`loss` (the mean the head would report over the whole set, each term averaged over its own count),
        each term's loss when there are several, then metric_fn(predictions, references)."""
        totals: dict[str, list[float]] = {}  # term -> [sum, count]
        predictions: list[Any] = []
        references: list[Any] = []
        with evaluation_mode(model) as device:
            for batch in loader:
                batch = to_device(batch, device)
                output = self.forward(model, batch)
                for name, (loss_sum, count) in self.sums(output, batch, model.config).items():
                    total = totals.setdefault(name, [0.0, 0.0])
                    total[0] += float(loss_sum)
                    total[1] += float(count)
                batch_predictions, batch_references = self.predictions(output, batch, model.config)
                predictions += batch_predictions
                references += batch_references
        losses = {f"{name}_loss": loss_sum / max(count, 1) for name, (loss_sum, count) in totals.items()}
        metrics = {"loss": sum(losses.values()), **(losses if len(losses) > 1 else {})}
        metric_fn = self.metric_fn or self.default_metrics(model.config)
        return {**metrics, **metric_fn(predictions, references)}


def problem_type(config: BertConfig, labels: Tensor) -> str:
    """The rule BertForSequenceClassification applies (and transformers): the config's problem_type, else
    regression for one label, single-label classification for integer labels, multi-label for float labels."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    return "single_label_classification" if labels.dtype in (torch.long, torch.int) else "multi_label_classification"


def mean_squared_error(predictions: list, references: list) -> dict[str, float]:
    return {"mse": float(np.mean((np.asarray(predictions) - np.asarray(references)) ** 2)) if references else 0.0}


class SequenceClassificationTask(FineTuningTask):
    """BertForSequenceClassification with `labels`. One term, "loss": cross-entropy summed over sequences; for
    regression, squared error summed over label values; for multi-label, binary cross-entropy summed over label
    values. Default metric: accuracy, or mean squared error ("mse") for regression."""

    def default_metrics(self, config: BertConfig) -> MetricFn:
        return mean_squared_error if config.num_labels == 1 or config.problem_type == "regression" else accuracy

    def counts(self, batch: Batch) -> dict[str, Tensor | int]:
        # One per sequence for class ids; one per value for regression and multi-hot targets, as the head's
        # mse_loss / binary_cross_entropy mean over every element.
        return {"loss": batch["labels"].numel()}

    def sums(self, output, batch: Batch, config: BertConfig) -> dict[str, tuple[Tensor, Tensor | int]]:
        labels, logits = batch["labels"], upcast(output.logits)  # (B,) or (B, C); (B, C)
        problem = problem_type(config, labels)
        if problem == "regression":
            loss_sum = F.mse_loss(logits.flatten(), labels.to(logits.dtype).flatten(), reduction="sum")
        elif problem == "single_label_classification":
            loss_sum = F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1), reduction="sum")
        else:
            loss_sum = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="sum")
        return {"loss": (loss_sum, labels.numel())}

    def predictions(self, output, batch: Batch, config: BertConfig) -> tuple[list, list]:
        labels, logits = batch["labels"], output.logits.float()
        problem = problem_type(config, labels)
        if problem == "regression":
            predicted = logits.squeeze(-1) if config.num_labels == 1 else logits
        elif problem == "single_label_classification":
            predicted = logits.argmax(-1)  # (B, C) -> (B,)
        else:
            predicted = (logits > 0).to(labels.dtype)  # (B, C) multi-hot
        return predicted.tolist(), labels.tolist()


class TokenClassificationTask(FineTuningTask):
    """BertForTokenClassification with per-token `labels` (-100 on [CLS], [SEP], padding and non-first word
    pieces): cross-entropy summed over labelled tokens. Predictions and references are, per sequence, the ids at
    labelled positions; the default metric is token accuracy."""

    def counts(self, batch: Batch) -> dict[str, Tensor | int]:
        return {"loss": (batch["labels"] != IGNORE_INDEX).sum()}

    def sums(self, output, batch: Batch, config: BertConfig) -> dict[str, tuple[Tensor, Tensor | int]]:
        labels = batch["labels"]  # (B, T)
        loss_sum = F.cross_entropy(upcast(output.logits).flatten(0, 1), labels.flatten(), reduction="sum")
        return {"loss": (loss_sum, (labels != IGNORE_INDEX).sum())}  # (B, T, C) -> (B*T, C) above

    def predictions(self, output, batch: Batch, config: BertConfig) -> tuple[list, list]:
        predicted, labels = output.logits.argmax(-1), batch["labels"]  # (B, T, C) -> (B, T); (B, T)
        keep = labels != IGNORE_INDEX
        return ([row[mask].tolist() for row, mask in zip(predicted, keep)],
                [row[mask].tolist() for row, mask in zip(labels, keep)])

    def default_metrics(self, config: BertConfig) -> MetricFn:
        return token_accuracy


def token_accuracy(predictions: list[list[int]], references: list[list[int]]) -> dict[str, float]:
    pairs = [(p, r) for row_p, row_r in zip(predictions, references) for p, r in zip(row_p, row_r)]
    return {"accuracy": float(np.mean([p == r for p, r in pairs])) if pairs else 0.0}


class QuestionAnsweringTask(FineTuningTask):
    """BertForQuestionAnswering with `start_positions` / `end_positions`. The head's loss is the mean of the start
    and end cross-entropies, so the terms "start" and "end" each sum half a cross-entropy; positions outside the
    window are clamped to T and ignored, as the head does. Predictions are each window's (start_logits,
    end_logits) over its real tokens, for a metric_fn that decodes answer text; the default metric is the
    fraction of windows whose best start and best end are both right."""

    def forward(self, model: nn.Module, batch: Batch):
        # Given the positions, the head computes the padded positions' logits too, as transformers does: its loss
        # is a softmax over every position, padding included. (Its own loss is not used; `sums` recomputes it.)
        return model(**model_inputs(batch), start_positions=batch["start_positions"],
                     end_positions=batch["end_positions"])

    def counts(self, batch: Batch) -> dict[str, Tensor | int]:
        tokens = batch["input_ids"].shape[1]
        return {name: (batch[f"{name}_positions"].clamp(0, tokens) != tokens).sum() for name in ("start", "end")}

    def sums(self, output, batch: Batch, config: BertConfig) -> dict[str, tuple[Tensor, Tensor | int]]:
        tokens = batch["input_ids"].shape[1]
        terms = {}
        for name, logits in (("start", output.start_logits), ("end", output.end_logits)):  # (B, T) each
            positions = batch[f"{name}_positions"].flatten().clamp(0, tokens)
            loss_sum = F.cross_entropy(upcast(logits), positions, ignore_index=tokens, reduction="sum")
            terms[name] = (loss_sum / 2, (positions != tokens).sum())
        return terms

    def predictions(self, output, batch: Batch, config: BertConfig) -> tuple[list, list]:
        lengths = (batch["attention_mask"].sum(1) if "attention_mask" in batch else
                   torch.full((batch["input_ids"].shape[0],), batch["input_ids"].shape[1])).tolist()
        start, end = output.start_logits.float().cpu().numpy(), output.end_logits.float().cpu().numpy()
        predicted = [(start[i, :n], end[i, :n]) for i, n in enumerate(lengths)]
        references = list(zip(batch["start_positions"].flatten().tolist(), batch["end_positions"].flatten().tolist()))
        return predicted, references

    def default_metrics(self, config: BertConfig) -> MetricFn:
        return span_accuracy


def span_accuracy(predictions: list[tuple[np.ndarray, np.ndarray]], references: list[tuple[int, int]]) -> dict:
    hits = [(int(start.argmax()), int(end.argmax())) == tuple(gold)
            for (start, end), gold in zip(predictions, references)]
    return {"span_accuracy": float(np.mean(hits)) if hits else 0.0}
