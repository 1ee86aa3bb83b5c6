"""The pretraining objective (BERT §3.1): masked LM, plus next-sentence prediction when batches carry its label.
What the training loop asks of it is in minibert.training.task; the losses themselves are the heads' own
(minibert.model: masked_lm_loss, next_sentence_loss), summed here."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from minibert.model import IGNORE_INDEX, PreTrainingOutput, masked_lm_loss, next_sentence_loss
from minibert.errors import TrainingError
from minibert.training.task import Batch, evaluation_mode, model_inputs, to_device


class PretrainingTask:
    """For BertForPreTraining (MLM + NSP, or MLM only) and BertForMaskedLM (MLM only).

    Batches hold input_ids, attention_mask, token_type_ids, `labels` (the original token at masked positions,
    IGNORE_INDEX elsewhere) and optionally `next_sentence_label` (0: B follows A, 1: B is random). Loss terms:
    "mlm" sums cross-entropy over masked tokens; "nsp" sums it over sequences. `mask_token_id` (the tokenizer's
    [MASK] id) lets evaluation split MLM accuracy by what the input showed at each target."""

    def __init__(self, mask_token_id: int | None = None):
        self.mask_token_id = mask_token_id

    def counts(self, batch: Batch) -> dict[str, Tensor | int]:
        counts: dict[str, Tensor | int] = {"mlm": (batch["labels"] != IGNORE_INDEX).sum()}
        if "next_sentence_label" in batch:
            counts["nsp"] = batch["next_sentence_label"].numel()
        return counts

    def forward(self, model: nn.Module, batch: Batch):
        # masked_only: the vocabulary projection runs on the masked positions only, and masked_logits (M, V) lines
        # up with labels[labels != IGNORE_INDEX] in row-major order. next_sentence_label is not passed
        # (BertForMaskedLM has no such argument; NSP logits come regardless), so the model's NSP loss is not computed.
        return model(**model_inputs(batch), labels=batch["labels"], masked_only=True)

    def sums(self, output, batch: Batch) -> dict[str, tuple[Tensor, int]]:
        labels = batch["labels"]
        targets = labels[labels != IGNORE_INDEX]  # (B, T) -> (M,), the order of masked_logits' rows
        # The model's MLM loss is the mean over exactly these targets: times their count it is the sum. A second
        # cross-entropy over the (M, V) logits would cost ~4% of a small model's training step.
        mlm_mean = output.mlm_loss if isinstance(output, PreTrainingOutput) else output.loss
        mlm_sum = mlm_mean * targets.numel() if targets.numel() else \
            masked_lm_loss(output.masked_logits, targets, reduction="sum")  # no targets: 0, where the mean is NaN
        terms = {"mlm": (mlm_sum, targets.numel())}
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
        and accuracy when batches carry next_sentence_label; `loss` is their sum, the pretraining objective.

        Beside them, what separates learning from copying (see `MaskedLMTally`): with `mask_token_id`, MLM
        accuracy where the input showed [MASK] (only the context can tell), a random token, or the target itself
        (`mlm_accuracy_mask`, `_random`, `_unchanged`); the unigram baseline, always guessing the most frequent
        target of this set, over all targets and at [MASK] positions (`mlm_unigram_accuracy`, `_mask`); the MLM
        loss at [MASK] positions (`mlm_loss_mask`); NSP's majority baseline, always answering the more frequent label (`nsp_majority_accuracy`)."""
        total = {"mlm": 0.0, "nsp": 0.0}
        count = {"mlm": 0, "nsp": 0}
        nsp_correct, nsp_labels_seen = 0, torch.zeros(2, dtype=torch.int64)
        tally = MaskedLMTally(self.mask_token_id)
        with evaluation_mode(model) as device:
            for batch in loader:
                batch = to_device(batch, device)
                output = self.forward(model, batch)
                tally.add(output.masked_logits, batch["input_ids"], batch["labels"])
                if "next_sentence_label" in batch:
                    nsp_labels = batch["next_sentence_label"].flatten()
                    nsp_correct += int((output.seq_relationship_logits.argmax(-1) == nsp_labels).sum())
                    nsp_labels_seen += torch.bincount(nsp_labels.cpu(), minlength=2)[:2]
                for name, (loss_sum, n) in self.sums(output, batch).items():
                    total[name] += float(loss_sum)
                    count[name] += int(n)
        mlm_loss = total["mlm"] / max(count["mlm"], 1)
        metrics = {"mlm_loss": mlm_loss, **tally.metrics(),
                   "perplexity": math.exp(mlm_loss) if mlm_loss < 700 else math.inf, "loss": mlm_loss}
        if count["nsp"]:
            metrics["nsp_loss"] = total["nsp"] / count["nsp"]
            metrics["nsp_accuracy"] = nsp_correct / count["nsp"]
            metrics["nsp_majority_accuracy"] = int(nsp_labels_seen.max()) / count["nsp"]
            metrics["loss"] = mlm_loss + metrics["nsp_loss"]
        return metrics


class MaskedLMTally:
    """Held-out MLM accuracy split by what the input showed at each target (BERT §3.1: of the chosen positions,
    80% show [MASK], 10% a random token, 10% the target itself), and the unigram baseline.

    A headline MLM accuracy mixes two skills: copying (at unchanged positions the answer is in the input, and a
    model learns to copy it long before it uses context) and prediction from context, which only [MASK] positions
    measure cleanly. What the input showed is read off the batch: the input id equals the label (unchanged, which
    includes the rare random draw of the target itself), is [MASK], or is something else (random)."""

    KINDS = ("mask", "random", "unchanged")

    def __init__(self, mask_token_id: int | None):
        self.mask_token_id = mask_token_id
        self.correct = {kind: 0 for kind in ("all", *self.KINDS)}
        self.count = dict.fromkeys(self.correct, 0)
        self.loss = dict.fromkeys(self.correct, 0.0)  # summed cross-entropy
        self.targets: Tensor | None = None  # (V,) how often each id is a target
        self.mask_targets: Tensor | None = None  # (V,) the same, at [MASK] positions

    def add(self, masked_logits: Tensor, input_ids: Tensor, labels: Tensor) -> None:
        where = labels != IGNORE_INDEX  # (B, T)
        targets, shown = labels[where], input_ids[where]  # (M,) each, the row order of masked_logits
        hits = masked_logits.argmax(-1) == targets  # (M, V) -> (M,)
        losses = masked_lm_loss(masked_logits, targets, reduction="none")  # (M,)
        kinds = {"all": torch.ones_like(hits)}
        if self.mask_token_id is not None:
            kinds["mask"] = shown == self.mask_token_id
            kinds["unchanged"] = shown == targets
            kinds["random"] = ~(kinds["mask"] | kinds["unchanged"])
        for kind, selected in kinds.items():
            self.correct[kind] += int(hits[selected].sum())
            self.count[kind] += int(selected.sum())
            self.loss[kind] += float(losses[selected].sum())
        vocab = masked_logits.shape[-1]
        batch_targets = torch.bincount(targets.cpu(), minlength=vocab)
        self.targets = batch_targets if self.targets is None else self.targets + batch_targets
        if self.mask_token_id is not None:
            batch_mask_targets = torch.bincount(targets[kinds["mask"]].cpu(), minlength=vocab)
            self.mask_targets = batch_mask_targets if self.mask_targets is None else \
                self.mask_targets + batch_mask_targets

    def metrics(self) -> dict[str, float]:
        def share(part: int, whole: int) -> float:
            return part / max(whole, 1)

        metrics = {"mlm_accuracy": share(self.correct["all"], self.count["all"])}
        if self.targets is None:
            return metrics
        most_frequent = int(self.targets.argmax())
        metrics["mlm_unigram_accuracy"] = share(int(self.targets[most_frequent]), self.count["all"])
        if self.mask_token_id is not None:
            for kind in self.KINDS:
                metrics[f"mlm_accuracy_{kind}"] = share(self.correct[kind], self.count[kind])
            metrics["mlm_unigram_accuracy_mask"] = share(int(self.mask_targets[most_frequent]), self.count["mask"])
            # No unigram loss beside it: estimated from a held-out set of a few thousand targets over a
            # vocabulary of thousands, the entropy comes out far too low (measured: 6.3 nats against 6.95 on the
            # training set); the most frequent target, which the accuracy baseline needs, is estimated well.
            metrics["mlm_loss_mask"] = self.loss["mask"] / max(self.count["mask"], 1)
        return metrics


def describe_metrics(metrics: dict[str, float]) -> str:
    """The held-out pretraining metrics in one line, each accuracy beside what guessing scores."""
    parts = [f"MLM accuracy {metrics['mlm_accuracy']:.1%}"]
    if "mlm_accuracy_mask" in metrics:
        parts[0] += (f": [MASK] {metrics['mlm_accuracy_mask']:.1%} (unigram guess "
                     f"{metrics['mlm_unigram_accuracy_mask']:.1%}), random token {metrics['mlm_accuracy_random']:.1%}, "
                     f"unchanged {metrics['mlm_accuracy_unchanged']:.1%}")
    elif "mlm_unigram_accuracy" in metrics:
        parts[0] += f" (unigram guess {metrics['mlm_unigram_accuracy']:.1%})"
    parts.append(f"MLM loss {metrics['mlm_loss']:.3f}")
    if "rtd_accuracy" in metrics:  # ELECTRA (minibert.pretraining.electra): the MLM figures are its generator's
        parts[0] = "generator " + parts[0]
        parts.append(f"replaced-token detection accuracy {metrics['rtd_accuracy']:.1%} (all-original guess "
                     f"{1 - metrics['rtd_replaced_share']:.1%}), precision {metrics['rtd_precision']:.1%}, recall "
                     f"{metrics['rtd_recall']:.1%}, AUC {metrics['rtd_auc']:.3f}")
    if "nsp_accuracy" in metrics:
        parts.append(f"NSP accuracy {metrics['nsp_accuracy']:.1%} (majority label {metrics['nsp_majority_accuracy']:.1%})")
    return "; ".join(parts)
