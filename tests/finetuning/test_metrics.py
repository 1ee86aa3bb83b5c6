"""Metrics against values worked out by hand (the arithmetic is in the comments), the seqeval README example
and the official SQuAD normalisation; and against the reference implementations on random and edge-case inputs:
scikit-learn (accuracy, F1, MCC), scipy (Pearson, Spearman with ties) and seqeval (entity P/R/F1, default mode)."""

import math

import numpy as np
import pytest

from minibert.finetuning.metrics import (MAIN_METRICS, accuracy, average_ranks, binary_f1, compute_metrics,
                                         entity_scores, extract_entities, macro_f1, matthews_corrcoef,
                                         mean_squared_error, normalize_answer, pearson, spearman, squad_exact_match,
                                         squad_f1, squad_scores)

# refs  1 1 1 0 0 0 1 0
# preds 1 1 0 0 0 1 1 0   -> TP = 3 (positions 0, 1, 6), FN = 1 (2), FP = 1 (5), TN = 3 (3, 4, 7)
REFERENCES = [1, 1, 1, 0, 0, 0, 1, 0]
PREDICTIONS = [1, 1, 0, 0, 0, 1, 1, 0]


# -- classification -------------------------------------------------------------------------------------------
def test_accuracy_and_binary_f1_by_hand():
    assert accuracy(PREDICTIONS, REFERENCES) == 6 / 8, "accuracy: 6 of 8 right"
    # precision = 3 / (3 + 1), recall = 3 / (3 + 1), F1 = 2 * 0.75 * 0.75 / 1.5 = 0.75
    assert binary_f1(PREDICTIONS, REFERENCES) == pytest.approx(0.75), "binary F1 of label 1"


def test_macro_f1_by_hand():
    # class 0: TP 1, predicted 2, actual 2 -> F1 = 2*1/(2+2) = 0.5
    # class 1: TP 2, predicted 3, actual 2 -> F1 = 2*2/(3+2) = 0.8
    # class 2: TP 1, predicted 1, actual 2 -> F1 = 2*1/(1+2) = 2/3
    macro = macro_f1([0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2])
    assert macro == pytest.approx((0.5 + 0.8 + 2 / 3) / 3), f"macro F1 should average the three classes: {macro}"


def test_matthews_by_hand():
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (3*3 - 1*1) / sqrt(4*4*4*4) = 8 / 16
    assert matthews_corrcoef(PREDICTIONS, REFERENCES) == pytest.approx(0.5), "binary MCC"
    assert matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0), "inverted predictions give -1"
    assert matthews_corrcoef([1, 1, 1, 1], [1, 1, 1, 0]) == 0.0, "constant predictions give 0, not nan"


def test_multiclass_matthews_equals_the_confusion_matrix_formula():
    rng = np.random.default_rng(0)
    references, predictions = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    confusion = np.zeros((3, 3))
    np.add.at(confusion, (references, predictions), 1)
    t, p, c, s = confusion.sum(1), confusion.sum(0), np.trace(confusion), confusion.sum()
    expected = (c * s - t @ p) / math.sqrt((s ** 2 - p @ p) * (s ** 2 - t @ t))  # Gorodkin's R_K
    assert matthews_corrcoef(predictions, references) == pytest.approx(expected), "multi-class MCC"


# -- regression -----------------------------------------------------------------------------------------------
def test_pearson_matches_numpy_and_is_zero_for_constant_input():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=20), rng.normal(size=20)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1]), "Pearson should equal numpy's corrcoef"
    assert pearson([3.0, 3.0, 3.0], [1.0, 2.0, 3.0]) == 0.0, "constant predictions should give 0"


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 30, 20]).tolist() == [1, 3, 3, 5, 3], "three 20s share ranks 2,3,4 -> 3"


def test_spearman_with_ties_by_hand():
    # ranks x = [1, 2.5, 2.5, 4], ranks y = [1, 3, 2, 4], both with mean 2.5
    # deviations x = [-1.5, 0, 0, 1.5], y = [-1.5, 0.5, -0.5, 1.5]
    # sum dx*dy = 2.25 + 2.25 = 4.5; sum dx^2 = 4.5; sum dy^2 = 5 -> rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9)), "Spearman with a tie"
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0), "monotone relation gives 1"


# -- entities -------------------------------------------------------------------------------------------------
def test_seqeval_readme_example():
    references = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    predictions = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    # gold: MISC 3-5, PER 0-1; predicted: MISC 2-5, PER 0-1; one of two matches on each side
    assert entity_scores(predictions, references) == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5}), \
        "seqeval README example should score 0.50"


def test_entities_in_bio_and_iob1():
    assert extract_entities(["B-PER", "I-PER", "B-PER", "O"]) == [("PER", 0, 1), ("PER", 2, 2)], \
        "B- after I- of the same type starts a new entity"
    assert extract_entities(["I-PER", "I-PER", "O", "I-LOC", "I-PER"]) == [("PER", 0, 1), ("LOC", 3, 3),
                                                                          ("PER", 4, 4)], \
        "IOB1: I- after O or after another type starts an entity"
    assert extract_entities(["B-geo-loc", "I-geo-loc"]) == [("geo-loc", 0, 1)], "types may contain hyphens"
    with pytest.raises(ValueError, match="tag 'PER'"):
        extract_entities(["PER"])


def test_entity_scores_with_nothing_predicted_are_zero():
    assert entity_scores([["O", "O"]], [["B-PER", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}, \
        "no predicted entities should score 0, not divide by zero"


# -- SQuAD ----------------------------------------------------------------------------------------------------
def test_official_normalisation():
    assert normalize_answer("The Cat!") == "cat", "lower-case, punctuation and article removal"
    assert normalize_answer("  an  apple,\tand THE  theatre ") == "apple and theatre", \
        "articles are whole words only; whitespace collapses"
    assert squad_exact_match("The Cat!", ["cat"]) == 1.0, "'The Cat!' vs 'cat' should be an exact match"


def test_squad_f1_token_bags_and_max_over_gold():
    # pred tokens [cat, sat], gold [cat, sat, down]: shared 2, precision 1, recall 2/3, F1 = 2*(2/3)/(5/3) = 0.8
    assert squad_f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8), "token-bag F1"
    assert squad_f1("the cat sat", ["dog", "cat sat"]) == 1.0, "F1 is the max over gold answers"
    assert squad_exact_match("cat sat", ["dog", "a dog"]) == 0.0, "no gold answer matches"


def test_squad_v2_empty_gold_means_no_answer():
    assert squad_exact_match("", []) == 1.0 and squad_f1("", []) == 1.0, "'' is right for a no-answer question"
    assert squad_exact_match("Paris", []) == 0.0 and squad_f1("Paris", []) == 0.0, "an answer there is wrong"
    assert squad_f1("", ["Paris"]) == 0.0, "'' is wrong for an answerable question"


def test_squad_scores_average_and_demand_every_prediction():
    scores = squad_scores({"a": "Paris", "b": "", "c": "the red car"}, {"a": ["paris"], "b": [], "c": ["car"]})
    # EM: 1, 1, 0 -> 2/3; F1: 1, 1, 2*(1/2)/(3/2) = 2/3 -> (8/3)/3
    assert scores == pytest.approx({"exact_match": 2 / 3, "f1": 8 / 9}), f"SQuAD averages wrong: {scores}"
    with pytest.raises(ValueError, match="no prediction for 1 question"):
        squad_scores({}, {"a": ["x"]})


# -- dispatch -------------------------------------------------------------------------------------------------
def test_compute_metrics_returns_each_kinds_main_metric():
    cases = {
        "classification": (PREDICTIONS, REFERENCES),
        "regression": ([0.1, 0.4, 0.3], [0.0, 0.5, 0.2]),
        "token_classification": ([["B-PER", "O"]], [["B-PER", "O"]]),
        "qa": ({"q": "Paris"}, {"q": ["Paris"]}),
    }
    assert set(cases) == set(MAIN_METRICS), "every task kind needs a case here"
    for kind, (predictions, references) in cases.items():
        scores = compute_metrics(kind, predictions, references)
        assert MAIN_METRICS[kind] in scores, f"{kind}: main metric missing from {sorted(scores)}"
    assert "f1" in compute_metrics("classification", PREDICTIONS, REFERENCES), "binary tasks should report F1"
    assert "f1" not in compute_metrics("classification", [0, 2], [0, 1]), "binary F1 only for 0/1 labels"
    with pytest.raises(ValueError, match="unknown task kind"):
        compute_metrics("translation", [], [])


# -- against the reference implementations: scikit-learn, scipy, seqeval ------------------------------------------
def label_pairs(seed: int):
    """(predictions, references) of random class ids, and edge cases: all right, all wrong, one class only, a
    class only predicted, a class only in the references, a single example."""
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n, classes = int(rng.integers(1, 60)), int(rng.integers(2, 6))
        yield rng.integers(0, classes, n), rng.integers(0, classes, n)
    yield [0, 1, 2, 1], [0, 1, 2, 1]
    yield [1, 0, 1, 0], [0, 1, 0, 1]
    yield [1, 1, 1], [1, 1, 1]
    yield [0, 0, 0], [1, 1, 1]
    yield [0, 2, 1, 1], [0, 1, 1, 0]
    yield [0, 1, 1, 1], [0, 1, 3, 3]
    yield [1], [0]


@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn's note on the one-class cases
def test_classification_metrics_equal_scikit_learn():
    from sklearn import metrics as sk

    for case, (predictions, references) in enumerate(label_pairs(seed=2)):
        what = f"case {case}: predictions {list(predictions)}, references {list(references)}"
        assert accuracy(predictions, references) == pytest.approx(sk.accuracy_score(references, predictions)), \
            f"accuracy differs from sklearn's, {what}"
        assert accuracy(predictions, references) == pytest.approx(
            sk.f1_score(references, predictions, average="micro", zero_division=0)), \
            f"accuracy (single-label micro F1) differs from sklearn's micro F1, {what}"
        assert macro_f1(predictions, references) == pytest.approx(
            sk.f1_score(references, predictions, average="macro", zero_division=0)), \
            f"macro F1 differs from sklearn's, {what}"
        assert matthews_corrcoef(predictions, references) == pytest.approx(
            sk.matthews_corrcoef(references, predictions), abs=1e-12), f"MCC differs from sklearn's, {what}"
        if set(np.unique(predictions)) | set(np.unique(references)) <= {0, 1}:
            assert binary_f1(predictions, references) == pytest.approx(
                sk.f1_score(references, predictions, average="binary", pos_label=1, zero_division=0)), \
                f"binary F1 differs from sklearn's, {what}"
            assert compute_metrics("classification", predictions, references)["f1"] == pytest.approx(
                sk.f1_score(references, predictions, zero_division=0)), f"compute_metrics' f1 is not binary, {what}"


def test_multi_label_accuracy_and_mean_squared_error_equal_scikit_learn():
    """Rows of labels (multi-label classification, multi-output regression): accuracy counts a row right only
    when all of it is (scikit-learn's subset accuracy); the squared error is averaged over every value."""
    from sklearn import metrics as sk

    rng = np.random.default_rng(4)
    for case in range(20):
        rows, width = int(rng.integers(1, 30)), int(rng.integers(1, 5))
        predicted, gold = rng.integers(0, 2, (rows, width)), rng.integers(0, 2, (rows, width))
        assert accuracy(predicted.tolist(), gold.tolist()) == pytest.approx(sk.accuracy_score(gold, predicted)), \
            f"case {case}: multi-label accuracy differs from sklearn's subset accuracy"
        scores, targets = rng.normal(size=(rows, width)), rng.normal(size=(rows, width))
        assert mean_squared_error(scores.tolist(), targets.tolist()) == pytest.approx(
            sk.mean_squared_error(targets, scores), abs=1e-12), f"case {case}: MSE differs from sklearn's"
        assert mean_squared_error(scores[:, 0], targets[:, 0]) == pytest.approx(
            sk.mean_squared_error(targets[:, 0], scores[:, 0]), abs=1e-12), f"case {case}: MSE of one column"


def test_correlations_equal_scipy_with_and_without_ties():
    from scipy import stats

    rng = np.random.default_rng(3)
    cases = [(rng.normal(size=n), rng.normal(size=n)) for n in (2, 3, 10, 200)]
    cases += [(rng.integers(0, 4, n).astype(float), rng.integers(0, 3, n).astype(float)) for n in (5, 30, 200)]
    cases += [([1.0, 2.0, 2.0, 2.0, 5.0], [3.0, 3.0, 1.0, 0.0, 3.0]), ([0.5, 0.5, 1.0], [2.0, 1.0, 1.0])]
    for case, (x, y) in enumerate(cases):
        what = f"case {case} ({len(x)} values, ties in x: {len(np.unique(x)) < len(x)})"
        assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12), \
            f"Pearson differs from scipy's, {what}"
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12), \
            f"Spearman differs from scipy's, {what}"
        assert average_ranks(x).tolist() == stats.rankdata(x, method="average").tolist(), \
            f"average ranks differ from scipy's rankdata, {what}"
    with np.errstate(all="ignore"), pytest.warns(stats.ConstantInputWarning):
        assert math.isnan(stats.spearmanr([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])[0]), "scipy gives nan for constant input"
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0, "constant input should give 0 (documented), not nan"


TRICKY_TAGS = [  # (predicted, reference) sentences where BIO is read leniently
    (["I-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),  # I- without B- starts an entity
    (["B-PER", "B-PER", "I-PER"], ["B-PER", "I-PER", "I-PER"]),  # adjacent entities of the same type
    (["B-PER", "I-LOC", "I-LOC"], ["B-PER", "B-LOC", "I-LOC"]),  # I- of another type starts a new entity
    (["O", "I-LOC", "B-LOC", "I-PER"], ["O", "B-LOC", "B-LOC", "B-PER"]),
    (["B-geo-loc", "I-geo-loc", "O"], ["B-geo-loc", "I-geo-loc", "I-geo-loc"]),  # types with hyphens
    (["O", "O"], ["O", "O"]),
    (["B-MISC"], ["O"]),
]


def random_tags(rng: np.random.Generator, n: int) -> list[str]:
    return [str(tag) for tag in rng.choice(["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"], n)]


def test_entity_scores_equal_seqeval_default_mode():
    from seqeval import metrics as sq
    from seqeval.metrics.sequence_labeling import get_entities

    rng = np.random.default_rng(4)
    corpora = [[pair] for pair in TRICKY_TAGS] + [TRICKY_TAGS]
    for _ in range(60):  # random corpora of random sentences
        lengths = rng.integers(1, 12, int(rng.integers(1, 6)))
        corpora.append([(random_tags(rng, n), random_tags(rng, n)) for n in lengths])
    for case, corpus in enumerate(corpora):
        predictions, references = [p for p, _ in corpus], [r for _, r in corpus]
        expected = {"precision": sq.precision_score(references, predictions, zero_division=0),
                    "recall": sq.recall_score(references, predictions, zero_division=0),
                    "f1": sq.f1_score(references, predictions, zero_division=0)}
        assert entity_scores(predictions, references) == pytest.approx(expected), \
            f"case {case}: entity P/R/F1 differ from seqeval's {expected} for predictions {predictions}, " \
            f"references {references}"
    for predicted, _ in TRICKY_TAGS:  # seqeval's own entity reader, 0-based inclusive ends like ours
        assert extract_entities(predicted) == get_entities(predicted), \
            f"entities of {predicted} differ from seqeval's get_entities"
