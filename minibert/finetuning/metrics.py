"""Evaluation metrics in numpy alone, each written to agree with the reference implementation people compare
against: scikit-learn for classification, scipy for correlations, seqeval (default mode) for entities, and the
official SQuAD v1.1/v2.0 evaluation scripts for QA. Every function takes (predictions, references); scores are
fractions in [0, 1] (papers print SQuAD and GLUE scores times 100)."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

MAIN_METRICS = {"classification": "accuracy", "regression": "pearson", "token_classification": "f1", "qa": "f1"}


# -- classification -------------------------------------------------------------------------------------------
def accuracy(predictions: Sequence, references: Sequence) -> float:
    """The share of predictions equal to their reference: class ids, or whole rows of labels (multi-label: every
    label of the row right, scikit-learn's subset accuracy)."""
    predictions, references = _paired_arrays(predictions, references, rows=True)
    return float(np.mean(np.all(predictions == references, axis=tuple(range(1, predictions.ndim)))))


def binary_f1(predictions: Sequence[int], references: Sequence[int], positive: int = 1) -> float:
    """F1 of the positive class (label 1), the F1 that GLUE reports for MRPC and QQP."""
    predictions, references = _paired_arrays(predictions, references)
    return _f1_of_class(predictions, references, positive)


def macro_f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Mean of per-class F1 over every class seen in either list, so rare classes weigh as much as common ones."""
    predictions, references = _paired_arrays(predictions, references)
    classes = np.union1d(predictions, references)
    return float(np.mean([_f1_of_class(predictions, references, label) for label in classes]))


def _f1_of_class(predictions: np.ndarray, references: np.ndarray, label: int) -> float:
    true_positives = np.sum((predictions == label) & (references == label))
    predicted, actual = np.sum(predictions == label), np.sum(references == label)
    return _f1(true_positives, predicted, actual)


def _f1(correct: int, predicted: int, actual: int) -> float:
    """Harmonic mean of precision (correct / predicted) and recall (correct / actual); 0 when either is 0."""
    return float(2 * correct / (predicted + actual)) if correct else 0.0


def matthews_corrcoef(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation (CoLA's metric), in the multi-class form scikit-learn uses; for two classes it is
    (TP·TN - FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)). 0 when a marginal is constant (nothing to correlate)."""
    predictions, references = _paired_arrays(predictions, references)
    classes = np.union1d(predictions, references)
    predicted_counts = np.array([np.sum(predictions == label) for label in classes], dtype=np.float64)
    actual_counts = np.array([np.sum(references == label) for label in classes], dtype=np.float64)
    correct, total = float(np.sum(predictions == references)), float(len(references))
    numerator = correct * total - predicted_counts @ actual_counts
    denominator = np.sqrt((total ** 2 - predicted_counts @ predicted_counts) *
                          (total ** 2 - actual_counts @ actual_counts))
    return float(numerator / denominator) if denominator > 0 else 0.0


# -- regression -----------------------------------------------------------------------------------------------
def mean_squared_error(predictions: Sequence, references: Sequence) -> float:
    """Mean of the squared differences over every value (one score, or a row of scores, per example)."""
    x, y = _paired_arrays(predictions, references, dtype=np.float64, rows=True)
    return float(np.mean((x - y) ** 2))


def pearson(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Pearson correlation; 0 when either side is constant (an untrained model's flat output), where scipy
    returns nan, so that comparing checkpoints by this number stays well defined."""
    x, y = _paired_arrays(predictions, references, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator > 0 else 0.0


def spearman(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Spearman correlation: Pearson of the ranks, tied values sharing their average rank (as scipy's)."""
    x, y = _paired_arrays(predictions, references, dtype=np.float64)
    return pearson(average_ranks(x), average_ranks(y))


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks; a group of equal values gets the mean of the ranks it spans ([10, 20, 20] -> [1, 2.5, 2.5])."""
    distinct, index_of_distinct, counts = np.unique(np.asarray(values), return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)  # rank of each distinct value's last copy
    return (last_rank - (counts - 1) / 2)[index_of_distinct]


# -- entities (NER) -------------------------------------------------------------------------------------------
def extract_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) of each entity in a BIO or IOB1 tag sequence, read as seqeval's default mode does:
    B-X starts an entity; I-X continues the entity before it when that one has type X, and starts a new one
    otherwise (after O, or after another type)."""
    entities, current = [], None  # current: (type, first position) of the open entity
    for position, tag in enumerate(tags):
        prefix, kind = _split_tag(tag)
        continues = prefix == "I" and current is not None and current[0] == kind
        if current is not None and not continues:
            entities.append((current[0], current[1], position - 1))
            current = None
        if prefix != "O" and not continues:
            current = (kind, position)
    if current is not None:
        entities.append((current[0], current[1], len(tags) - 1))
    return entities


def is_tag(tag: str) -> bool:
    """Whether `tag` is O, B-TYPE or I-TYPE (BIO and IOB1 tags, as CoNLL-2003 writes them)."""
    prefix, _, kind = tag.partition("-")
    return tag == "O" or (prefix in ("B", "I") and bool(kind))


def _split_tag(tag: str) -> tuple[str, str]:
    if not is_tag(tag):
        raise ValueError(f"tag '{tag}' is not O, B-TYPE or I-TYPE")
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def entity_scores(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 over all sentences: an entity counts as found only when its
    type, first and last token all match a gold entity."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predicted sentences but {len(references)} reference sentences")
    predicted, actual = set(), set()
    for sentence, (predicted_tags, reference_tags) in enumerate(zip(predictions, references)):
        if len(predicted_tags) != len(reference_tags):
            raise ValueError(f"sentence {sentence}: {len(predicted_tags)} predicted tags but "
                             f"{len(reference_tags)} reference tags")
        predicted.update((sentence, *entity) for entity in extract_entities(predicted_tags))
        actual.update((sentence, *entity) for entity in extract_entities(reference_tags))
    correct = len(predicted & actual)
    return {"precision": correct / len(predicted) if predicted else 0.0,
            "recall": correct / len(actual) if actual else 0.0,
            "f1": _f1(correct, len(predicted), len(actual))}


# -- SQuAD ----------------------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower-case, drop punctuation, drop articles, collapse whitespace."""
    text = "".join(character for character in text.lower() if character not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
    return max(float(normalize_answer(prediction) == normalize_answer(gold)) for gold in _gold_or_empty(gold_answers))


def squad_f1(prediction: str, gold_answers: Sequence[str]) -> float:
    """Best token-bag F1 over the gold answers (annotators disagree on span edges, so the closest one counts)."""
    return max(_token_f1(prediction, gold) for gold in _gold_or_empty(gold_answers))


def _gold_or_empty(gold_answers: Sequence[str]) -> list[str]:
    """SQuAD 2.0's rule: gold answers that normalise to nothing are dropped, and a question left with none is
    unanswerable, whose only right answer is ""."""
    return [gold for gold in gold_answers if normalize_answer(gold)] or [""]


def _token_f1(prediction: str, gold: str) -> float:
    predicted_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted_tokens or not gold_tokens:
        return float(predicted_tokens == gold_tokens)  # v2.0: "" is right exactly for no-answer questions
    shared = sum((Counter(predicted_tokens) & Counter(gold_tokens)).values())
    return _f1(shared, len(predicted_tokens), len(gold_tokens))


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Mean exact match and F1 over the reference questions (id -> gold answer texts; [] for unanswerable)."""
    missing = [question_id for question_id in references if question_id not in predictions]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} question(s), e.g. {missing[0]}")
    exact = [squad_exact_match(predictions[qid], golds) for qid, golds in references.items()]
    f1 = [squad_f1(predictions[qid], golds) for qid, golds in references.items()]
    return {"exact_match": float(np.mean(exact)), "f1": float(np.mean(f1))}


# -- dispatch -------------------------------------------------------------------------------------------------
def compute_metrics(task_kind: str, predictions, references) -> dict[str, float]:
    """All metrics of a task kind; MAIN_METRICS[task_kind] (or GLUE_TASKS[task].metric) names the one to rank by.

    classification: class ids (binary F1 is added when every id is 0 or 1); regression: floats;
    token_classification: tag lists per sentence; qa: {id: answer} and {id: [gold answers]}."""
    if task_kind == "classification":
        scores = {"accuracy": accuracy(predictions, references), "macro_f1": macro_f1(predictions, references),
                  "mcc": matthews_corrcoef(predictions, references)}
        if set(np.unique(predictions)) | set(np.unique(references)) <= {0, 1}:
            scores["f1"] = binary_f1(predictions, references)
        return scores
    if task_kind == "regression":
        return {"pearson": pearson(predictions, references), "spearman": spearman(predictions, references)}
    if task_kind == "token_classification":
        return entity_scores(predictions, references)
    if task_kind == "qa":
        return squad_scores(predictions, references)
    raise ValueError(f"unknown task kind '{task_kind}'; known: {', '.join(MAIN_METRICS)}")


def _paired_arrays(predictions, references, dtype=None, rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of the same shape: lists of values, or with `rows` also lists of equally long rows."""
    predictions, references = np.asarray(predictions, dtype=dtype), np.asarray(references, dtype=dtype)
    if predictions.shape != references.shape or predictions.ndim not in ((1, 2) if rows else (1,)):
        raise ValueError(f"predictions {predictions.shape} and references {references.shape} must be two lists "
                         f"of the same length" + (" (of values, or of rows of the same length)" if rows else ""))
    return predictions, references
