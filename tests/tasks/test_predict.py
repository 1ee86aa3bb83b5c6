"""Predictor on tiny fine-tuned models: the right fields for each task, the model's own probabilities whatever the
batching, results in input order, the task read from the folder, and clear errors for unusable input."""

from __future__ import annotations

import shutil

import pytest
import torch

from minibert.errors import CheckpointError, InputError
from minibert.model import BertForSequenceClassification
from minibert.tasks.finetune import finetune
from minibert.tasks.predict import Predictor, predict, read_records
from minibert.tokenizer import BertTokenizer

from .test_finetune import (FAST, classification_rows, make_checkpoint, regression_rows, write_conll, write_csv,
                            write_squad)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("tiny"))


def fine_tuned(checkpoint, tmp_path_factory, task, write, epochs=6):
    folder = tmp_path_factory.mktemp(task)
    data = write(folder / "data")
    return finetune(checkpoint, task, data, folder / "run", validation_fraction=0.2, num_epochs=epochs,
                    **FAST).model_dir


@pytest.fixture(scope="module")
def classifier_dir(checkpoint, tmp_path_factory):
    return fine_tuned(checkpoint, tmp_path_factory, "classification",
                      lambda path: write_csv(path.with_suffix(".csv"), classification_rows(320)))


@pytest.fixture(scope="module")
def tagger_dir(checkpoint, tmp_path_factory):
    return fine_tuned(checkpoint, tmp_path_factory, "ner", lambda path: write_conll(path, 240))


@pytest.fixture(scope="module")
def reader_dir(checkpoint, tmp_path_factory):
    return fine_tuned(checkpoint, tmp_path_factory, "qa", lambda path: write_squad(path, 240))


TEXTS = ["the movie was good", "awful", "this film and the story and the plot was very very great", "bad actor"]


def test_classification_gives_label_and_the_models_probabilities(classifier_dir):
    results = Predictor.load(classifier_dir).predict([{"text": text} for text in TEXTS], batch_size=3)
    assert [r["text"] for r in results] == TEXTS, "results should come back in input order, with their records"
    assert [r["label"] for r in results] == ["pos", "neg", "pos", "neg"], f"labels: {[r['label'] for r in results]}"
    model = BertForSequenceClassification.from_pretrained(classifier_dir).eval()
    tokenizer = BertTokenizer.from_pretrained(classifier_dir)
    for result in results:  # one text at a time: no padding, no sorting
        with torch.no_grad():
            expected = model(**tokenizer([result["text"]])).logits.softmax(-1)[0].tolist()
        got = [result["probabilities"]["neg"], result["probabilities"]["pos"]]
        assert got == pytest.approx(expected, abs=1e-5), \
            f"batched, length-sorted probabilities {got} should equal the model's {expected} for {result['text']!r}"


def test_regression_gives_a_score(checkpoint, tmp_path_factory):
    model_dir = fine_tuned(checkpoint, tmp_path_factory, "regression",
                           lambda path: write_csv(path.with_suffix(".csv"), regression_rows(320)))
    good, bad = predict(model_dir, [{"text": "the film was good and great"}, {"text": "bad and awful"}])
    assert set(good) == {"text", "score"}, f"regression results should carry a score: {good}"
    assert good["score"] > 1.0 > -1.0 > bad["score"], f"two positives should score near 2, two negatives near -2: " \
                                                      f"{good['score']:.2f}, {bad['score']:.2f}"


def test_ner_gives_word_tags_and_entity_spans(tagger_dir):
    [from_text, from_tokens] = predict(tagger_dir, [{"text": "the alice smith was in paris"},
                                                    {"tokens": ["bob", "is", "in", "rome"]}])
    assert from_text["words"] == ["the", "alice", "smith", "was", "in", "paris"], "text should split on whitespace"
    assert from_text["tags"] == ["O", "B-PER", "I-PER", "O", "O", "B-LOC"], f"tags: {from_text['tags']}"
    assert from_text["entities"] == [{"type": "PER", "text": "alice smith", "start": 1, "end": 3},
                                     {"type": "LOC", "text": "paris", "start": 5, "end": 6}], from_text["entities"]
    assert [e["text"] for e in from_tokens["entities"]] == ["bob", "rome"], "a tokens list should be tagged as given"


def test_ner_words_past_max_length_are_tagged_o(tagger_dir):
    words = ["the"] * 300 + ["alice"]
    [result] = predict(tagger_dir, [{"tokens": words}])
    assert len(result["tags"]) == 301 and result["tags"][-1] == "O", \
        "every word gets a tag; words cut off by max_length get O"


def test_qa_gives_the_answer_span_and_its_probability(reader_dir):
    context = "the film was quite good and carol was in it"
    [result] = predict(reader_dir, [{"id": "x", "question": "who is there ?", "context": context}])
    assert result["answer"] == "carol", f"answer should be the name in the context, got {result['answer']!r}"
    assert context[result["start"]:result["end"]] == result["answer"], "start/end should index the context"
    assert 0.0 < result["score"] <= 1.0, f"score should be a probability, got {result['score']}"
    assert result["id"] == "x", "the input record's fields should be kept"


def test_task_comes_from_config_without_label_map(classifier_dir, tmp_path):
    copy = shutil.copytree(classifier_dir, tmp_path / "copy")
    (copy / "label_map.json").unlink()
    predictor = Predictor.load(copy)
    assert predictor.kind.name == "classification" and predictor.labels == ["neg", "pos"], \
        "without label_map.json, the task and labels should come from config.json"


def test_untrained_or_unknown_head_is_an_error(checkpoint):
    with pytest.raises(CheckpointError, match="cannot tell which task it was fine-tuned for"):
        Predictor.load(checkpoint)
    with pytest.raises(CheckpointError, match=r"has no trained classification head \(classifier.weight"):
        Predictor.load(checkpoint, task="classification")


def test_records_missing_their_field(classifier_dir, reader_dir):
    with pytest.raises(InputError, match="record 2: no 'text' field"):
        predict(classifier_dir, [{"text": "good"}, {"sentence": "bad"}])
    with pytest.raises(InputError, match="record 1: no 'context' field"):
        predict(reader_dir, [{"question": "who ?"}])


def test_read_records_takes_json_objects_and_plain_lines():
    records = read_records(['{"text": "a", "pair": "b"}\n', "\n", "plain text line\n"], "in.txt")
    assert records == [{"text": "a", "pair": "b"}, {"text": "plain text line"}], records
    with pytest.raises(InputError, match=r"in\.txt:2: bad JSON"):
        read_records(["good\n", '{"text": \n'], "in.txt")
    with pytest.raises(InputError, match="in.txt: no records"):
        read_records(["\n"], "in.txt")
