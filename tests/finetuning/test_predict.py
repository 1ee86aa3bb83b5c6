"""Predictor on tiny fine-tuned models: the right fields for each task, the model's own probabilities whatever the
batching, results in input order, the task read from the folder, and clear errors for unusable input. A SQuAD 2.0
model answers "" through `minibert predict`, and its answers there are the ones its evaluation decoded."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

import minibert.finetuning.run
from minibert.cli.main import main
from minibert.errors import CheckpointError, InputError
from minibert.model import BertForSequenceClassification
from minibert.finetuning.run import finetune
from minibert.finetuning.predict import Predictor, predict, read_records
from minibert.finetuning.qa_decoding import QADecoding
from minibert.tokenizer import BertTokenizer

from .test_run import (FAST, FILLERS, PEOPLE, classification_rows, make_checkpoint, regression_rows, squad_json,
                       write_conll, write_csv, write_squad)


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
    # 8 epochs: at 6 the span's end was still one word late for one head initialisation in four (seeds 0-3 tried).
    return fine_tuned(checkpoint, tmp_path_factory, "qa", lambda path: write_squad(path, 240), epochs=8)


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


def test_read_records_takes_json_objects_and_plain_lines_each_with_its_line():
    records = list(read_records(['{"text": "a", "pair": "b"}\n', "\n", "plain text line\n"], "in.txt"))
    assert records == [("in.txt:1", {"text": "a", "pair": "b"}), ("in.txt:3", {"text": "plain text line"})], records
    with pytest.raises(InputError, match=r"in\.txt:2: bad JSON"):
        list(read_records(["good\n", '{"text": \n'], "in.txt"))
    with pytest.raises(InputError, match=r"in\.txt:1: bad JSON \(nested too deeply\)"):
        list(read_records(['{"text": ' + "[" * 100_000 + "]" * 100_000 + "}"], "in.txt"))
    assert list(read_records(["\n"], "in.txt")) == [], "a blank line is no record"


def test_a_bad_record_is_reported_at_its_origin(classifier_dir):
    with pytest.raises(InputError, match=r"in\.txt:7: 'text' should be text, got int"):
        Predictor.load(classifier_dir).predict([{"text": "good"}, {"text": 5}], origins=["in.txt:4", "in.txt:7"])


def test_qa_model_trained_without_unanswerable_questions_never_answers_nothing(reader_dir):
    saved = json.loads((reader_dir / "label_map.json").read_text())["qa_decoding"]
    assert saved == {"n_best": 20, "max_answer_length": 30, "null_score_threshold": None}, \
        f"a SQuAD 1.1-style model should be saved with null answers off: {saved}"
    [result] = predict(reader_dir, [{"question": "who is there ?", "context": "the film was quite good"}])
    assert result["answer"] != "", "a model trained without unanswerable questions should always give a span"


# -- SQuAD 2.0: no answer, end to end -------------------------------------------------------------------------
def squad_v2_json(n: int, seed: int = 0) -> dict:
    """squad_json's questions, and as many unanswerable ones: "who is there ?" over fillers with no name."""
    data = squad_json(n // 2, seed)
    rng = random.Random(seed + 1)
    for i in range(n - n // 2):
        context = " ".join(rng.choice(FILLERS) for _ in range(rng.randint(5, 12)))
        data["data"][0]["paragraphs"].append({"context": context, "qas": [
            {"id": f"none{i}", "question": "who is there ?", "answers": [], "is_impossible": True}]})
    random.Random(seed + 2).shuffle(data["data"][0]["paragraphs"])
    return {**data, "version": "v2.0"}


@pytest.fixture(scope="module")
def v2_run(checkpoint, tmp_path_factory):
    """A model fine-tuned on SQuAD 2.0-style data, and the answers its last evaluation decoded (of the final
    model: the loop evaluates at the last step), caught on their way from the decoder to the metric."""
    folder = tmp_path_factory.mktemp("qa2")
    (folder / "train.json").write_text(json.dumps(squad_v2_json(320)), encoding="utf-8")
    evaluations = []
    decode = minibert.finetuning.run.decode_answers

    def recording(examples, *args):
        answers = decode(examples, *args)
        evaluations.append((examples, answers))
        return answers

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(minibert.finetuning.run, "decode_answers", recording)
        result = finetune(checkpoint, "qa", folder / "train.json", folder / "run", validation_fraction=0.2,
                          num_epochs=6, **FAST)
    return result, evaluations[-1]


def test_qa_v2_answers_nothing_through_the_command_line(v2_run, tmp_path):
    result, _ = v2_run
    model_dir = result.training.output_dir / "final"
    questions = [{"id": "name", "question": "who is there ?", "context": "the plot of this film and carol was in it"},
                 {"id": "none", "question": "who is there ?", "context": "the plot of this film and it was in a scene"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")

    def answers(*flags: str) -> list[dict]:
        out = tmp_path / "out.jsonl"
        assert main(["predict", str(model_dir), "--input", str(tmp_path / "in.jsonl"), "-o", str(out), *flags]) == 0, \
            f"minibert predict {' '.join(flags)} failed"
        return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]

    named, nameless = answers()
    assert named["answer"] == "carol", f"the answerable question should get the name, got {named}"
    assert nameless["answer"] == "" and (nameless["start"], nameless["end"]) == (0, 0), \
        f"a context without a name should get no answer (\"\"), got {nameless}"
    assert 0.5 < nameless["score"] <= 1.0, f"no answer wins here, so its probability should be above half: {nameless}"
    _, nameless = answers("--null-score-threshold", "1000")
    assert nameless["answer"] != "", f"a huge --null-score-threshold should rule out no-answer, got {nameless}"
    named, _ = answers("--null-score-threshold", "-1000")
    assert named["answer"] == "", f"a hugely negative --null-score-threshold should always answer '', got {named}"


def test_qa_v2_predict_gives_the_answers_evaluation_decoded(v2_run):
    result, (examples, evaluated) = v2_run
    assert result.metrics["exact_match"] > 0.9, f"the v2 model should learn the task first: {result.metrics}"
    predictor = Predictor.load(result.training.output_dir / "final")
    assert predictor.decoding == QADecoding(), f"the folder should carry the evaluation's decoding, got " \
                                               f"{predictor.decoding}"
    records = [{"question": example.question, "context": example.context} for example in examples]
    predicted = predictor.predict(records, batch_size=7)
    assert sum(example.is_impossible for example in examples) > 10, "the validation set should hold unanswerable " \
                                                                      "questions"
    for example, result_ in zip(examples, predicted):
        answer = evaluated[example.id]
        assert result_["answer"] == answer.text, \
            f"{example.id}: evaluation decoded {answer.text!r}, predict answered {result_['answer']!r}"
        assert result_["score"] == pytest.approx(answer.probability, abs=1e-4), \
            f"{example.id}: evaluation's probability {answer.probability:.5f}, predict's {result_['score']:.5f}"
