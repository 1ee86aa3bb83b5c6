"""Fine-tuning objectives (BERT §4): sequence classification and regression, token classification, and extractive
QA, as the training loop asks for them (minibert.training.task).

Each adapter sums the loss its minibert head computes as a mean (the head's own loss function in minibert.model,
with reduction="sum"), so training through the loop optimises exactly what `model(..., labels=...).loss` reports.
Evaluation hands the task's predictions and references to a `metric_fn(predictions, references) -> dict`, so a
task plugs in its own metric (for instance one of minibert.finetuning.metrics, or a closure that maps token ids
back to words); each adapter has a simple default.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn

from minibert.config import BertConfig
from minibert.finetuning import metrics
from minibert.model import (IGNORE_INDEX, answer_positions, problem_type, question_answering_loss,
                            sequence_classification_loss, token_classification_loss)
from minibert.training.task import Batch, evaluation_mode, model_inputs, to_device, unwrap

MetricFn = Callable[[list, list], dict[str, float]]


def accuracy(predictions: list, references: list) -> dict[str, float]:
    """{"accuracy": the share of predictions equal to their reference (a class id, or a whole multi-hot vector)}."""
    return {"accuracy": metrics.accuracy(predictions, references) if references else 0.0}


def mean_squared_error(predictions: list, references: list) -> dict[str, float]:
    return {"mse": metrics.mean_squared_error(predictions, references) if references else 0.0}


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
        scores = {"loss": sum(losses.values()), **(losses if len(losses) > 1 else {})}
        metric_fn = self.metric_fn or self.default_metrics(model.config)
        return {**scores, **metric_fn(predictions, references)}


class SequenceClassificationTask(FineTuningTask):
    """BertForSequenceClassification with `labels`. One term, "loss" (minibert.model.sequence_classification_loss
    summed): cross-entropy summed over sequences; for regression, squared error summed over label values; for
    multi-label, binary cross-entropy summed over label values. Default metric: accuracy, or mean squared error
    ("mse") for regression."""

    def default_metrics(self, config: BertConfig) -> MetricFn:
        return mean_squared_error if config.num_labels == 1 or config.problem_type == "regression" else accuracy

    def counts(self, batch: Batch) -> dict[str, Tensor | int]:
        # One per sequence for class ids; one per value for regression and multi-hot targets, as the head's
        # mse_loss / binary_cross_entropy mean over every element.
        return {"loss": batch["labels"].numel()}

    def sums(self, output, batch: Batch, config: BertConfig) -> dict[str, tuple[Tensor, Tensor | int]]:
        loss_sum = sequence_classification_loss(output.logits, batch["labels"], config, reduction="sum")
        return {"loss": (loss_sum, self.counts(batch)["loss"])}

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
    """BertForTokenClassification with per-token `labels` (IGNORE_INDEX on [CLS], [SEP], padding and non-first
    word pieces): cross-entropy summed over labelled tokens (minibert.model.token_classification_loss).
    Predictions and references are, per sequence, the ids at labelled positions; the default metric is token
    accuracy."""

    def counts(self, batch: Batch) -> dict[str, Tensor | int]:
        return {"loss": (batch["labels"] != IGNORE_INDEX).sum()}

    def sums(self, output, batch: Batch, config: BertConfig) -> dict[str, tuple[Tensor, Tensor | int]]:
        loss_sum = token_classification_loss(output.logits, batch["labels"], reduction="sum")
        return {"loss": (loss_sum, self.counts(batch)["loss"])}

    def predictions(self, output, batch: Batch, config: BertConfig) -> tuple[list, list]:
        predicted, labels = output.logits.argmax(-1), batch["labels"]  # (B, T, C) -> (B, T); (B, T)
        keep = labels != IGNORE_INDEX
        return ([row[mask].tolist() for row, mask in zip(predicted, keep)],
                [row[mask].tolist() for row, mask in zip(labels, keep)])

    def default_metrics(self, config: BertConfig) -> MetricFn:
        return token_accuracy


def token_accuracy(predictions: list[list[int]], references: list[list[int]]) -> dict[str, float]:
    """Accuracy over every labelled token of every sequence."""
    return accuracy([p for row in predictions for p in row], [r for row in references for r in row])


class QuestionAnsweringTask(FineTuningTask):
    """BertForQuestionAnswering with `start_positions` / `end_positions`. The head's loss is the mean of the start
    and end cross-entropies, so the terms "start" and "end" each sum half a cross-entropy
    (minibert.model.question_answering_loss); positions outside the window are ignored, as the head does.
    Predictions are each window's (start_logits, end_logits) over its real tokens, for a metric_fn that decodes
    answer text; the default metric is the fraction of windows whose best start and best end are both right."""

    def forward(self, model: nn.Module, batch: Batch):
        # Given the positions, the head computes the padded positions' logits too, as transformers does: its loss
        # is a softmax over every position, padding included. (Its own loss is not used; `sums` recomputes it.)
        return model(**model_inputs(batch), start_positions=batch["start_positions"],
                     end_positions=batch["end_positions"])

    def counts(self, batch: Batch) -> dict[str, Tensor | int]:
        tokens = batch["input_ids"].shape[1]
        return {name: (answer_positions(batch[f"{name}_positions"], tokens) != tokens).sum()
                for name in ("start", "end")}

    def sums(self, output, batch: Batch, config: BertConfig) -> dict[str, tuple[Tensor, Tensor | int]]:
        halves = question_answering_loss(output.start_logits, output.end_logits, batch["start_positions"],
                                         batch["end_positions"], reduction="sum")
        counts = self.counts(batch)
        return {name: (loss_sum, counts[name]) for name, loss_sum in halves.items()}

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
