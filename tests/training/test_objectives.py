import math

import pytest
import torch
from synthetic_training import MASK_ID, VOCAB, SyntheticPretraining, stack, tiny_model

from minibert.model import (BertForMaskedLM, BertForPreTraining, BertForQuestionAnswering, BertForSequenceClassification,
                            BertForTokenClassification)
from minibert.finetuning.objective import QuestionAnsweringTask, SequenceClassificationTask, TokenClassificationTask
from minibert.pretraining.objective import MaskedLMTally, PretrainingTask


def mean_from_terms(terms):
    return sum(total / count for total, count in terms.values())


def test_pretraining_terms_sum_to_the_model_loss():
    model = tiny_model()
    batch = stack([SyntheticPretraining(6)[i] for i in range(6)])
    terms = PretrainingTask().loss_terms(model, batch)
    assert set(terms) == {"mlm", "nsp"}, f"terms {set(terms)}"
    assert terms["mlm"][1] == int((batch["labels"] != -100).sum()), "mlm count should be the masked tokens"
    expected = model(**batch).loss
    assert mean_from_terms(terms).item() == pytest.approx(expected.item(), abs=1e-6), \
        "mlm sum / masked + nsp sum / batch should equal BertForPreTraining's loss"
    assert PretrainingTask().counts(batch) == {"mlm": terms["mlm"][1], "nsp": 6}, "counts() disagrees with loss_terms"


def test_pretraining_evaluate_reports_accuracy_and_perplexity():
    data = SyntheticPretraining(8)
    loader = [stack([data[i] for i in range(j, j + 4)]) for j in (0, 4)]
    metrics = PretrainingTask().evaluate(tiny_model(), loader)
    assert set(metrics) == {"mlm_loss", "mlm_accuracy", "mlm_unigram_accuracy", "perplexity", "nsp_loss",
                            "nsp_accuracy", "nsp_majority_accuracy", "loss"}, metrics
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["mlm_loss"])), "perplexity is exp(MLM loss)"
    assert 0 <= metrics["mlm_accuracy"] <= 1 and 0 <= metrics["nsp_accuracy"] <= 1, metrics
    assert metrics["mlm_loss"] == pytest.approx(math.log(VOCAB), abs=0.3), "an untrained model is near uniform"


def test_pretraining_evaluate_splits_accuracy_when_it_knows_the_mask_id():
    data = SyntheticPretraining(8)  # every target shows [MASK] (MASK_ID) in its input
    loader = [stack([data[i] for i in range(j, j + 4)]) for j in (0, 4)]
    metrics = PretrainingTask(mask_token_id=MASK_ID).evaluate(tiny_model(), loader)
    assert metrics["mlm_accuracy_mask"] == metrics["mlm_accuracy"], f"all targets are [MASK] positions: {metrics}"
    assert metrics["mlm_accuracy_random"] == 0 and metrics["mlm_accuracy_unchanged"] == 0, metrics
    labels = torch.cat([batch["labels"][batch["labels"] != -100] for batch in loader])
    assert metrics["mlm_unigram_accuracy_mask"] == pytest.approx(labels.bincount().max().item() / len(labels)), \
        "the unigram baseline is the share of the most frequent target"
    nsp = torch.cat([batch["next_sentence_label"] for batch in loader])
    assert metrics["nsp_majority_accuracy"] == pytest.approx(nsp.bincount().max().item() / len(nsp)), metrics


def test_tally_tells_mask_random_and_unchanged_positions_apart():
    mask_id, vocab = 3, 10
    # One sequence, five targets: [MASK] -> 7 (predicted 7: hit), [MASK] -> 7 (predicted 5: miss),
    # random 9 -> 7 (predicted 7: hit), unchanged 8 -> 8 (predicted 8: hit), unchanged 7 -> 7 (predicted 2: miss).
    input_ids = torch.tensor([[1, mask_id, mask_id, 9, 8, 7, 2]])
    labels = torch.tensor([[-100, 7, 7, 7, 8, 7, -100]])
    predicted = torch.tensor([7, 5, 7, 8, 2])
    logits = torch.nn.functional.one_hot(predicted, vocab).float()  # (M, V), rows in label order
    tally = MaskedLMTally(mask_id)
    tally.add(logits, input_ids, labels)
    metrics = tally.metrics()
    assert metrics["mlm_accuracy"] == pytest.approx(3 / 5), metrics
    assert metrics["mlm_accuracy_mask"] == pytest.approx(1 / 2), f"[MASK] positions: 1 hit of 2, got {metrics}"
    assert metrics["mlm_accuracy_random"] == 1.0, f"the random position was predicted right, got {metrics}"
    assert metrics["mlm_accuracy_unchanged"] == pytest.approx(1 / 2), f"unchanged: 1 hit of 2, got {metrics}"
    assert metrics["mlm_unigram_accuracy"] == pytest.approx(4 / 5), "always guessing 7 gets 4 of 5 targets"
    assert metrics["mlm_unigram_accuracy_mask"] == 1.0, "both [MASK] targets are 7, the most frequent target"
    mask_losses = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([7, 7]), reduction="none")
    assert metrics["mlm_loss_mask"] == pytest.approx(mask_losses.mean().item()), "loss at [MASK] positions"


def test_mlm_only_with_a_masked_lm_model():
    model = tiny_model(BertForMaskedLM)
    batch = stack([SyntheticPretraining(4, nsp=False)[i] for i in range(4)])
    terms = PretrainingTask().loss_terms(model, batch)
    assert set(terms) == {"mlm"}, f"a batch without next_sentence_label gives only the mlm term, got {set(terms)}"
    assert terms["mlm"][0].item() / terms["mlm"][1] == pytest.approx(model(**batch).loss.item(), abs=1e-6)


@pytest.mark.parametrize("model_class", [BertForMaskedLM, BertForPreTraining])
def test_mlm_sum_takes_one_cross_entropy_over_the_vocabulary(model_class, monkeypatch):
    """The model's MLM mean times the count is the sum the loop needs: a second softmax over the (M, V) logits
    would cost a few percent of a small model's step. The sum still equals the cross-entropy summed directly."""
    model = tiny_model(model_class)
    batch = stack([SyntheticPretraining(4, nsp=False)[i] for i in range(4)])
    vocabulary_sized = []
    cross_entropy = torch.nn.functional.cross_entropy

    def counting(logits, *args, **kwargs):
        vocabulary_sized.append(logits.shape[-1] == VOCAB)
        return cross_entropy(logits, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", counting)
    terms = PretrainingTask().loss_terms(model, batch)
    assert sum(vocabulary_sized) == 1, f"{sum(vocabulary_sized)} cross-entropies over the vocabulary per batch"
    output = model(**batch, masked_only=True)
    targets = batch["labels"][batch["labels"] != -100]
    direct = cross_entropy(output.masked_logits, targets, reduction="sum")
    assert terms["mlm"][0].item() == pytest.approx(direct.item(), rel=1e-6), "the MLM sum is not the summed loss"


def test_mlm_sum_of_a_batch_without_targets_is_zero():
    model = tiny_model(BertForMaskedLM)
    batch = stack([SyntheticPretraining(2, nsp=False)[i] for i in range(2)])
    batch["labels"] = torch.full_like(batch["labels"], -100)
    total, count = PretrainingTask().loss_terms(model, batch)["mlm"]
    assert count == 0 and total.item() == 0.0, f"no targets should give a sum of 0 over 0, got {total} over {count}"


def classification_batch(labels, **extra):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (4, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, **extra}


@pytest.mark.parametrize("labels, overrides", [
    (torch.tensor([0, 2, 1, 2]), dict(num_labels=3)),
    (torch.tensor([0.5, -1.0, 2.0, 0.0]), dict(num_labels=1)),
    (torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]), dict(num_labels=2)),
], ids=["single-label", "regression", "multi-label"])
def test_sequence_task_matches_the_head_loss(labels, overrides):
    model = tiny_model(BertForSequenceClassification, **overrides)
    batch = classification_batch(labels)
    task = SequenceClassificationTask()
    terms = task.loss_terms(model, batch)
    assert mean_from_terms(terms).item() == pytest.approx(model(**batch).loss.item(), abs=1e-6), \
        "the summed loss / count should equal the head's mean loss"
    metrics = task.evaluate(model, [batch])
    assert metrics["loss"] == pytest.approx(model(**batch).loss.item(), abs=1e-6), "evaluate's loss is the mean"
    assert ("mse" if overrides["num_labels"] == 1 else "accuracy") in metrics, f"default metric missing: {metrics}"


def test_token_task_counts_only_labelled_tokens():
    model = tiny_model(BertForTokenClassification, num_labels=4)
    labels = torch.randint(0, 4, (4, 10), generator=torch.Generator().manual_seed(1))
    labels[:, 0] = -100
    labels[1, 7:] = -100
    batch = classification_batch(labels)
    task = TokenClassificationTask()
    terms = task.loss_terms(model, batch)
    assert int(terms["loss"][1]) == int((labels != -100).sum()), "count should be the labelled tokens"
    assert mean_from_terms(terms).item() == pytest.approx(model(**batch).loss.item(), abs=1e-6)
    seen = []
    metrics = TokenClassificationTask(metric_fn=lambda p, r: seen.append((p, r)) or {"custom": 1.0}).evaluate(
        model, [batch])
    assert metrics["custom"] == 1.0 and len(seen[0][0]) == 4, "a plugged-in metric_fn gets one row per sequence"
    assert [len(row) for row in seen[0][1]] == (labels != -100).sum(1).tolist(), "rows keep labelled tokens only"


def test_qa_task_matches_the_head_loss_with_positions_outside_the_window():
    model = tiny_model(BertForQuestionAnswering)
    batch = classification_batch(None, start_positions=torch.tensor([1, 3, 50, 2]),
                                 end_positions=torch.tensor([2, 60, 55, 4]))
    del batch["labels"]
    terms = QuestionAnsweringTask().loss_terms(model, batch)
    assert int(terms["start"][1]) == 3 and int(terms["end"][1]) == 2, "positions past the window are ignored"
    head = model(**batch)
    assert mean_from_terms(terms).item() == pytest.approx(head.loss.item(), abs=1e-6), "QA loss differs from head"
    assert "span_accuracy" in QuestionAnsweringTask().evaluate(model, [batch]), "default QA metric missing"
