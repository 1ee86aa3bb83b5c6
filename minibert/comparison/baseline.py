"""The classic baseline beside the BERT arms: TF-IDF features and a logistic regression (scikit-learn, the optional
extra `minibert[compare]`), on the same splits: fitted on the train split, its configuration (words or words and
bigrams; C in 1, 4, 16) chosen on the validation split, scored once on the test split with the task's metrics.
A sentence pair is one text (the two joined by a space), as a bag of words has no sides. Classification only: the
other kinds have no such standard baseline.
"""

from __future__ import annotations

from typing import Any

from minibert.errors import MinibertError, spelled
from minibert.finetuning.kinds import TaskKind
from minibert.finetuning.metrics import compute_metrics
from minibert.finetuning.readers import build_label_map

NGRAMS = {"words": (1, 1), "words+bigrams": (1, 2)}
C_VALUES = (1.0, 4.0, 16.0)
INSTALL = "pip install 'minibert[compare]' (scikit-learn)"


def check_available(kind: TaskKind) -> bool:
    """Whether the baseline applies to `kind`; refuses, in one line, a missing scikit-learn."""
    if kind.name != "classification":
        return False
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise MinibertError(f"the TF-IDF + logistic regression baseline needs scikit-learn: {INSTALL}, or give "
                            f"{spelled('baseline')} none") from None
    return True


def tfidf_baseline(kind: TaskKind, train: list, validation: list, test: list) -> dict[str, Any]:
    """{"chosen": {"ngrams", "C"}, "validation": metrics, "test": metrics, "grid": [every configuration's
    validation metrics]}."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    label_ids = build_label_map(example.label for example in train)
    texts = {name: [_text(example) for example in part] for name, part in
             (("train", train), ("validation", validation), ("test", test))}
    targets = {name: [label_ids[example.label] for example in part] for name, part in
               (("train", train), ("validation", validation), ("test", test))}

    def score(classifier, vectorizer, split: str) -> dict[str, float]:
        predicted = classifier.predict(vectorizer.transform(texts[split])).tolist()
        return compute_metrics(kind.metric_kind, predicted, targets[split])

    grid, best = [], None
    for ngrams, ngram_range in NGRAMS.items():
        vectorizer = TfidfVectorizer(ngram_range=ngram_range)
        train_features = vectorizer.fit_transform(texts["train"])
        for c in C_VALUES:
            classifier = LogisticRegression(C=c, max_iter=2000).fit(train_features, targets["train"])
            scores = score(classifier, vectorizer, "validation")
            grid.append({"ngrams": ngrams, "C": c, "validation": scores})
            if best is None or scores[kind.main_metric] > best[0][kind.main_metric]:
                best = scores, classifier, vectorizer, {"ngrams": ngrams, "C": c}
    validation, classifier, vectorizer, chosen = best
    return {"chosen": chosen, "validation": validation, "test": score(classifier, vectorizer, "test"), "grid": grid}


def _text(example) -> str:
    return example.text if example.pair is None else f"{example.text} {example.pair}"
