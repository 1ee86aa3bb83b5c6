"""The QA decoder on windows and logits written by hand: the best span by start + end logit, the null score and
its threshold, the lowest null over windows, n-best probabilities worked out by hand; and on random logits, the
same answers and probabilities as a line-by-line port of `write_predictions` from Google's run_squad.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minibert.errors import InputError
from minibert.finetuning.features import QAFeature
from minibert.finetuning.qa_decoding import QADecoding, decode_answers
from minibert.finetuning.readers import QAExample

CONTEXT = "alice met bob in paris"
WORDS = {"alice": (0, 5), "met": (6, 9), "bob": (10, 13), "in": (14, 16), "paris": (17, 22)}
QUESTION_TOKENS = 2  # [CLS] q q [SEP] context... [SEP]


def window(words: list[str], example_id: str = "q") -> QAFeature:
    """A window over some context words: [CLS], two question tokens, [SEP], the words, [SEP]."""
    offsets = [None] * (QUESTION_TOKENS + 2) + [WORDS[word] for word in words] + [None]
    return QAFeature(example_id, [0] * len(offsets), [0] * len(offsets), offsets)


def logits(feature: QAFeature, cls: float = 0.0, **at_words: float) -> np.ndarray:
    """-5 everywhere, `cls` at [CLS], and the given value at each named word of the window."""
    row = np.full(len(feature.offsets), -5.0)
    row[0] = cls
    for word, value in at_words.items():
        row[feature.offsets.index(WORDS[word])] = value
    return row


def decode(features, starts, ends, **settings):
    answers = decode_answers([QAExample("q", "who?", CONTEXT, [])], features, starts, ends, QADecoding(**settings))
    return answers["q"]


ALL = list(WORDS)


def test_best_span_is_the_highest_valid_start_plus_end():
    feature = window(ALL)
    answer = decode([feature], [logits(feature, bob=4.0, paris=1.0)], [logits(feature, paris=3.0, alice=3.5)],
                    null_score_threshold=None)
    # alice as the end would score more (4 + 3.5) but ends before bob: bob..paris (4 + 3) wins
    assert answer.text == "bob in paris", f"the best span whose end is not before its start, got {answer.text!r}"
    assert CONTEXT[answer.start:answer.end] == answer.text, "start/end should index the context"
    short = decode([feature], [logits(feature, bob=4.0, paris=1.0)], [logits(feature, paris=3.0, bob=0.5)],
                   null_score_threshold=None, max_answer_length=2)
    # bob..paris is 3 tokens: over the limit, so bob..bob (4 + 0.5) beats paris..paris (1 + 3)
    assert short.text == "bob", f"max_answer_length 2 should rule out the 3-token span, got {short.text!r}"


@pytest.mark.parametrize("threshold, expected", [(-100.0, ""), (1.9, ""), (2.0, "bob"), (2.1, "bob"), (None, "bob")])
def test_no_answer_when_the_null_score_beats_the_best_span_by_more_than_the_threshold(threshold, expected):
    feature = window(ALL)
    # null score 3 + 3 = 6; best span bob..bob 2 + 2 = 4; their difference 2 is what the threshold compares
    answer = decode([feature], [logits(feature, cls=3.0, bob=2.0)], [logits(feature, cls=3.0, bob=2.0)],
                    null_score_threshold=threshold)
    assert answer.text == expected, f"threshold {threshold}: null score beats the span by 2, expected " \
                                    f"{expected!r}, got {answer.text!r}"
    if threshold is not None:
        assert answer.null_score_diff == pytest.approx(2.0), f"null_score_diff should be 6 - 4: {answer}"


def test_null_score_is_the_lowest_over_the_windows():
    first, second = window(["alice", "met", "bob"]), window(["bob", "in", "paris"])
    starts = [logits(first, cls=5.0, bob=3.0), logits(second, cls=-1.0)]
    ends = [logits(first, cls=5.0, bob=3.0), logits(second, cls=-1.0)]
    # span bob (6); nulls 10 and -2: the lowest, -2, is the window most sure the answer is in it
    answer = decode([first, second], starts, ends)
    assert answer.text == "bob", f"the null score should be the lowest over windows (-2 < 6), got {answer.text!r}"
    assert answer.null_score_diff == pytest.approx(-8.0), f"null_score_diff should be -2 - 6, got {answer}"


def test_probability_is_a_softmax_over_the_n_best_and_the_null_answer():
    first, second = window(["alice", "met", "bob"]), window(["met", "bob", "in", "paris"])
    # One-word answers only (max_answer_length 1): both windows find "bob" (2 + 2 = 4); "paris" scores 1 + 1 = 2;
    # "alice" 0.5 + 0.5 = 1; the null score is the lower window's, 1 + 1.5 = 2.5
    starts = [logits(first, cls=1.0, bob=2.0, alice=0.5), logits(second, cls=4.0, bob=2.0, paris=1.0)]
    ends = [logits(first, cls=1.5, bob=2.0, alice=0.5), logits(second, cls=4.0, bob=2.0, paris=1.0)]
    answer = decode([first, second], starts, ends, n_best=3, max_answer_length=1)
    # distinct texts ranked: bob 4, null 2.5, paris 2, alice 1 ...; the n_best=3 kept: bob, null, paris
    expected = math.exp(4) / (math.exp(4) + math.exp(2.5) + math.exp(2))
    assert answer.text == "bob" and answer.probability == pytest.approx(expected), \
        f"'bob' found twice should count once, beside the null answer and 'paris': expected {expected:.4f}, " \
        f"got {answer}"
    no_null = decode([first, second], starts, ends, n_best=3, max_answer_length=1, null_score_threshold=None)
    expected = math.exp(4) / (math.exp(4) + math.exp(2) + math.exp(1))
    assert no_null.probability == pytest.approx(expected), \
        f"without null answers the n-best are bob, paris, alice: expected {expected:.4f}, got {no_null}"
    empty = decode([first, second], starts, ends, n_best=3, max_answer_length=1, null_score_threshold=-2.0)
    assert empty.text == "" and empty.probability == pytest.approx(math.exp(2.5) / (math.exp(4) + math.exp(2.5) +
                                                                                     math.exp(2))), \
        f"a threshold of -2 should answer '' (2.5 - 4 > -2) with the null answer's probability, got {empty}"


def test_n_best_limits_the_starts_and_ends_searched():
    feature = window(ALL)
    starts, ends = [logits(feature, paris=3.0, **{"in": 2.9}, alice=2.8)], [logits(feature, alice=3.0, met=2.9)]
    two = decode([feature], starts, ends, n_best=2, null_score_threshold=None)
    assert (two.text, two.probability) == ("", 0.0), \
        f"the two best starts (paris, in) come after the two best ends (alice, met): no valid span, got {two}"
    three = decode([feature], starts, ends, n_best=3, null_score_threshold=None)
    assert three.text == "alice", f"the third start, alice, pairs with the best end, alice, got {three}"


def test_padding_past_the_window_is_ignored():
    feature = window(ALL)
    starts, ends = logits(feature, bob=2.0), logits(feature, bob=2.0)
    padded = [np.append(starts, [50.0] * 4)], [np.append(ends, [50.0] * 4)]
    assert decode([feature], *padded) == decode([feature], [starts], [ends]), "logits past the window must not count"


def test_bad_settings_name_the_setting():
    with pytest.raises(InputError, match="n_best must be a positive integer, got 0"):
        QADecoding(n_best=0)
    with pytest.raises(InputError, match="max_answer_length must be a positive integer"):
        QADecoding(max_answer_length=1.5)
    with pytest.raises(InputError, match="null_score_threshold must be a finite number"):
        QADecoding(null_score_threshold=math.nan)


# -- against Google's run_squad.py ------------------------------------------------------------------------------
def run_squad_write_predictions(context, features, starts, ends, n_best, max_answer_length, version_2, threshold):
    """`write_predictions` of google-research/bert run_squad.py for one example, ported line by line (the text is
    cut from the context by character offsets, and, as transformers' run_qa.py, without the
    `token_is_max_context` check, which minibert does not make either). Returns (answer, its probability)."""
    def best_indexes(values):
        return [i for i, _ in sorted(enumerate(values), key=lambda x: x[1], reverse=True)[:n_best]]

    prelim, score_null, null_feature, null_start, null_end = [], 1e6, 0, 0.0, 0.0
    for index, feature in enumerate(features):
        if version_2:
            feature_null_score = starts[index][0] + ends[index][0]
            if feature_null_score < score_null:
                score_null, null_feature = feature_null_score, index
                null_start, null_end = starts[index][0], ends[index][0]
        for start in best_indexes(starts[index]):
            for end in best_indexes(ends[index]):
                if start >= len(feature.offsets) or end >= len(feature.offsets):
                    continue
                if feature.offsets[start] is None or feature.offsets[end] is None:
                    continue
                if end < start or end - start + 1 > max_answer_length:
                    continue
                prelim.append((index, start, end, starts[index][start], ends[index][end]))
    if version_2:
        prelim.append((null_feature, 0, 0, null_start, null_end))
    prelim = sorted(prelim, key=lambda x: x[3] + x[4], reverse=True)
    nbest, seen = [], set()
    for index, start, end, start_logit, end_logit in prelim:
        if len(nbest) >= n_best:
            break
        if start > 0:
            offsets = features[index].offsets
            text = context[offsets[start][0]:offsets[end][1]]
            if text in seen:
                continue
        else:
            text = ""
        seen.add(text)
        nbest.append((text, start_logit, end_logit))
    if version_2 and "" not in seen:
        nbest.append(("", null_start, null_end))
    if not any(text for text, _, _ in nbest):
        # No valid span: run_squad.py answers "empty" (1.1) or fails (2.0); minibert answers "" with the null
        # answer's probability, or 0 without null answers.
        return "", 1.0 if version_2 else 0.0
    totals = np.array([start_logit + end_logit for _, start_logit, end_logit in nbest])
    probabilities = np.exp(totals - totals.max()) / np.exp(totals - totals.max()).sum()
    best_non_null = next(i for i, (text, _, _) in enumerate(nbest) if text)
    if not version_2:
        return nbest[0][0], probabilities[0]
    score_diff = score_null - nbest[best_non_null][1] - nbest[best_non_null][2]
    if score_diff > threshold:
        return "", probabilities[[text for text, _, _ in nbest].index("")]
    return nbest[best_non_null][0], probabilities[best_non_null]


@pytest.mark.parametrize("small_n_best", [False, True], ids=["n_best-covers-windows", "n_best-3"])
def test_random_logits_decode_as_run_squad_does(small_n_best):
    rng = np.random.default_rng(0)
    checked = empty = 0
    for trial in range(300):
        words = ALL[rng.integers(0, 3):]
        features = [window(words[:rng.integers(2, len(words) + 1)]), window(words[rng.integers(0, 2):])][
            :rng.integers(1, 3)]
        starts = [rng.normal(0, 2, len(f.offsets)) for f in features]
        ends = [rng.normal(0, 2, len(f.offsets)) for f in features]
        if small_n_best:  # run_squad.py's top 3 over all positions are then context tokens, as minibert's are
            for row in starts + ends:
                row[1:QUESTION_TOKENS + 2] = row[-1] = -50.0
                third_best = np.sort(row[QUESTION_TOKENS + 2:-1])[-min(3, len(row) - QUESTION_TOKENS - 3)]
                row[0] = min(row[0], third_best - 0.1)  # below the top 3: [CLS] must not take a place there
        n_best = 3 if small_n_best else 20
        max_answer_length = int(rng.integers(1, 5))
        for version_2, threshold in ((False, 0.0), (True, 0.0), (True, float(rng.uniform(-6, 2)))):
            expected = run_squad_write_predictions(CONTEXT, features, starts, ends, n_best, max_answer_length,
                                                   version_2, threshold)
            answer = decode(features, starts, ends, n_best=n_best, max_answer_length=max_answer_length,
                            null_score_threshold=threshold if version_2 else None)
            assert (answer.text, answer.probability) == (expected[0], pytest.approx(expected[1])), \
                f"trial {trial}, version_2 {version_2}, threshold {threshold:.2f}: run_squad.py gives {expected}, " \
                f"minibert {answer}"
            checked += 1
            empty += answer.text == ""
    assert empty > 15 and checked - empty > 300, f"the trials should mix answers ({checked - empty}) and " \
                                                 f"no-answers ({empty})"
