"""Answers from a QA head's start and end logits: the one decoder that fine-tuning's evaluation and `predict` share,
following `write_predictions` in Google's run_squad.py (BERT 2018, sections 4.2 and 4.3).

For each question, over all windows of its context:
1. Candidate spans: the `n_best` highest start logits and the `n_best` highest end logits among a window's
   context tokens, paired when the end is not before the start and the span has at most `max_answer_length`
   tokens. A span scores start logit + end logit. (run_squad.py takes the top `n_best` over every position and
   then drops the ones outside the context; taking them among context tokens first never finds fewer spans.)
2. The null score, "no answer": start + end logit at [CLS], in the window where it is lowest, the window most sure
   that the answer is in it (run_squad.py's `score_null`).
3. The answer is the best span; or "" when null answers are allowed (SQuAD 2.0) and the null score beats the best
   span's score by more than `null_score_threshold` (run_squad.py's `null_score_diff_threshold`; a higher
   threshold answers "" less often).
4. Its probability is its share of a softmax over the scores of the `n_best` best distinct answer texts, the
   null answer ranked among them when allowed (and added when it ranks lower): the `probability` of
   run_squad.py's nbest_predictions.json. With threshold 0 the chosen answer is the likeliest one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minibert.errors import InputError, spelled
from minibert.finetuning.features import CLS_POSITION, QAFeature
from minibert.finetuning.readers import QAExample


@dataclass(frozen=True)
class QADecoding:
    """How answers are chosen. `null_score_threshold` None: never answer "" (SQuAD 1.1, where every question has
    an answer in its context)."""
    n_best: int = 20
    max_answer_length: int = 30  # tokens
    null_score_threshold: float | None = 0.0

    def __post_init__(self):
        for name in ("n_best", "max_answer_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{spelled(name)} must be a positive integer, got {value!r}")
        threshold = self.null_score_threshold
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not math.isfinite(threshold)):
            raise InputError(f"{spelled('null_score_threshold')} must be a finite number (or None: never answer "
                             f"\"\"), got {threshold!r}")


@dataclass(frozen=True)
class Answer:
    text: str  # the context's exact characters; "" for no answer
    start: int  # first character in the context (0 for "")
    end: int  # one past the last character (0 for "")
    probability: float  # see the module docstring, point 4
    null_score_diff: float | None  # null score minus the best span's; None without null answers or without a span


def decode_answers(examples: Sequence[QAExample], features: Sequence[QAFeature],
                   start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray],
                   decoding: QADecoding = QADecoding()) -> dict[str, Answer]:
    """The answer to each example, by id. Row i of the logits belongs to features[i] (a window of the example
    with that id) and may be longer than the window (padding), never shorter."""
    windows = defaultdict(list)
    for index, feature in enumerate(features):
        windows[feature.example_id].append(index)
    return {example.id: _answer(example.context, [(features[i].offsets, start_logits[i], end_logits[i])
                                                  for i in windows[example.id]], decoding)
            for example in examples}


def span_candidates(start_logits: np.ndarray, end_logits: np.ndarray, offsets: Sequence[tuple[int, int] | None],
                    n_best: int, max_answer_length: int) -> list[tuple[float, int, int]]:
    """(score, start char, end char) of every valid pairing of one window's `n_best` likeliest context starts and
    ends (point 1 of the module docstring), best first."""
    context = np.array([position for position, offset in enumerate(offsets) if offset is not None], dtype=np.int64)
    if context.size == 0:
        return []
    starts = context[np.argsort(-start_logits[context], kind="stable")[:n_best]]  # (n,)
    ends = context[np.argsort(-end_logits[context], kind="stable")[:n_best]]  # (n,)
    scores = start_logits[starts][:, None] + end_logits[ends][None, :]  # (n, n): start i with end j
    length = ends[None, :] - starts[:, None] + 1  # (n, n) tokens
    valid = (length >= 1) & (length <= max_answer_length)
    order = np.argsort(-np.where(valid, scores, -np.inf), axis=None, kind="stable")[:int(valid.sum())]
    rows, columns = np.unravel_index(order, scores.shape)
    return [(float(scores[i, j]), offsets[starts[i]][0], offsets[ends[j]][1]) for i, j in zip(rows, columns)]


def _answer(context: str, windows: list[tuple[Sequence, np.ndarray, np.ndarray]], decoding: QADecoding) -> Answer:
    spans, null_score = [], math.inf
    for offsets, starts, ends in windows:
        starts = np.asarray(starts, dtype=np.float64)[:len(offsets)]  # (T,): drop padding
        ends = np.asarray(ends, dtype=np.float64)[:len(offsets)]
        null_score = min(null_score, float(starts[CLS_POSITION] + ends[CLS_POSITION]))
        spans += span_candidates(starts, ends, offsets, decoding.n_best, decoding.max_answer_length)
    best = _best_distinct(context, spans, decoding.n_best)
    allow_null = decoding.null_score_threshold is not None and bool(windows)
    if allow_null and sum(score >= null_score for score, _, _ in best) < decoding.n_best:
        best = best[:max(1, decoding.n_best - 1)]  # the null answer ranks among the n best and takes a place
    scores = [score for score, _, _ in best] + ([null_score] if allow_null else [])
    if not scores:  # no window, or no context token in any: nothing to choose from
        return Answer("", 0, 0, 0.0, None)
    probabilities = _softmax(np.array(scores))
    null_score_diff = null_score - best[0][0] if allow_null and best else None
    if not best or (allow_null and null_score_diff > decoding.null_score_threshold):
        return Answer("", 0, 0, float(probabilities[-1]), null_score_diff)
    _, start, end = best[0]
    return Answer(context[start:end], start, end, float(probabilities[0]), null_score_diff)


def _best_distinct(context: str, spans: list[tuple[float, int, int]], n_best: int) -> list[tuple[float, int, int]]:
    """The `n_best` highest-scoring spans with distinct texts (overlapping windows find the same span twice)."""
    best, seen = [], set()
    for span in sorted(spans, key=lambda span: -span[0]):
        text = context[span[1]:span[2]]
        if text and text not in seen:
            seen.add(text)
            best.append(span)
            if len(best) == n_best:
                break
    return best


def _softmax(scores: np.ndarray) -> np.ndarray:
    weights = np.exp(scores - scores.max())
    return weights / weights.sum()
