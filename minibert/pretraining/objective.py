"""The pretraining objective (BERT §3.1): masked LM, plus next-sentence prediction when batches carry its label.
What the training loop asks of it is in minibert.training.task; the losses themselves are the heads' own
(minibert.model: masked_lm_loss, next_sentence_loss), summed here."""

from __future__ import annotations

import math
from typing import Iterable

from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from minibert.model import IGNORE_INDEX, masked_lm_loss, next_sentence_loss
from minibert.training.errors import TrainingError
from minibert.training.task import Batch, evaluation_mode, model_inputs, to_device


class PretrainingTask:
    """For BertForPreTraining (MLM + NSP, or MLM only) and BertForMaskedLM (MLM only).

    Batches hold input_ids, attention_mask, token_type_ids, `labels` (the original token at masked positions,
    IGNORE_INDEX elsewhere) and optionally `next_sentence_label` (0: B follows A, 1: B is random). Loss terms:
    "mlm" sums cross-entropy over masked tokens; "nsp" sums it over sequences."""

    def counts(self, batch: Batch) -> dict[str, Tensor | int]:
        counts: dict[str, Tensor | int] = {"mlm": (batch["labels"] != IGNORE_INDEX).sum()}
        if "next_sentence_label" in batch:
            counts["nsp"] = batch["next_sentence_label"].numel()
        return counts

    def forward(self, model: nn.Module, batch: Batch):
        # masked_only: the vocabulary projection runs on the masked positions only, and masked_logits (M, V) lines
        # up with labels[labels != IGNORE_INDEX] in row-major order. The model's own mean losses are not used, so
        # next_sentence_label is not passed (BertForMaskedLM has no such argument; NSP logits come regardless).
        return model(**model_inputs(batch), labels=batch["labels"], masked_only=True)

    def sums(self, output, batch: Batch) -> dict[str, tuple[Tensor, int]]:
        labels = batch["labels"]
        targets = labels[labels != IGNORE_INDEX]  # (B, T) -> (M,), the order of masked_logits' rows
        terms = {"mlm": (masked_lm_loss(output.masked_logits, targets, reduction="sum"), targets.numel())}
        if "next_sentence_label" in batch:
            nsp_logits = getattr(output, "seq_relationship_logits", None)  # (B, 2)
            if nsp_logits is None:
                raise TrainingError("batch has next_sentence_label but the model has no NSP head; use "
                                    "BertForPreTraining, or leave the label out for MLM-only training")
            nsp_labels = batch["next_sentence_label"].flatten()
            terms["nsp"] = (next_sentence_loss(nsp_logits, nsp_labels, reduction="sum"), nsp_labels.numel())
        return terms

    def loss_terms(self, model: nn.Module, batch: Batch) -> dict[str, tuple[Tensor, int]]:
        if isinstance(model, DistributedDataParallel) and hasattr(model.module, "nsp") \
                and "next_sentence_label" not in batch:
            # Without NSP labels the pooler and NSP head get no gradient, and DDP would wait for theirs forever.
            raise TrainingError("MLM-only pretraining with BertForPreTraining under DDP leaves its NSP head without "
                                "gradients; use BertForMaskedLM, or batches with next_sentence_label")
        return self.sums(self.forward(model, batch), batch)

    def evaluate(self, model: nn.Module, loader: Iterable[Batch]) -> dict[str, float]:
        """MLM loss, accuracy and perplexity (exp of the MLM loss) over all masked tokens of `loader`; NSP loss
        and accuracy when batches carry next_sentence_label; `loss` is their sum, the pretraining objective."""
        total = {"mlm": 0.0, "nsp": 0.0}
        correct = {"mlm": 0, "nsp": 0}
        count = {"mlm": 0, "nsp": 0}
        with evaluation_mode(model) as device:
            for batch in loader:
                batch = to_device(batch, device)
                output = self.forward(model, batch)
                labels = batch["labels"]
                predicted = {"mlm": (output.masked_logits.argmax(-1), labels[labels != IGNORE_INDEX])}
                if "next_sentence_label" in batch:
                    predicted["nsp"] = (output.seq_relationship_logits.argmax(-1),
                                        batch["next_sentence_label"].flatten())
                for name, (loss_sum, n) in self.sums(output, batch).items():
                    total[name] += float(loss_sum)
                    count[name] += int(n)
                    correct[name] += int((predicted[name][0] == predicted[name][1]).sum())
        mlm_loss = total["mlm"] / max(count["mlm"], 1)
        metrics = {"mlm_loss": mlm_loss, "mlm_accuracy": correct["mlm"] / max(count["mlm"], 1),
                   "perplexity": math.exp(mlm_loss) if mlm_loss < 700 else math.inf, "loss": mlm_loss}
        if count["nsp"]:
            metrics["nsp_loss"] = total["nsp"] / count["nsp"]
            metrics["nsp_accuracy"] = correct["nsp"] / count["nsp"]
            metrics["loss"] = mlm_loss + metrics["nsp_loss"]
        return metrics
