"""`minibert finetune` and `minibert predict`: a tiny run end to end through the command line, and each kind of
bad input ending with exit status 2 and one line on stderr (no traceback)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minibert.cli.main import main
from minibert.config import BertConfig
from minibert.model import BertForSequenceClassification
from minibert.tokenizer import BertTokenizer

from .test_run import TINY, classification_rows, make_checkpoint, squad_json, write_csv

QUICK = ["--batch-size", "16", "--lr", "2e-3", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "sentiment.csv", classification_rows(320))


def test_finetune_then_predict_from_a_file(checkpoint, sentiment, tmp_path, capsys):
    status = main(["finetune", str(checkpoint), "--task", "classification", "--train", str(sentiment),
                   "--validation-fraction", "0.2", "--epochs", "6", "--output-dir", str(tmp_path / "run"), *QUICK])
    out = capsys.readouterr().out
    assert status == 0, f"finetune should succeed: {out}"
    model_dir = Path(out.strip().splitlines()[-1].removeprefix("model: "))
    assert "validation (64 examples" in out and "accuracy 1.0000" in out, f"summary should show the metrics: {out}"

    (tmp_path / "in.txt").write_text('the movie was good\n{"text": "bad plot"}\n')
    status = main(["predict", str(model_dir), "--input", str(tmp_path / "in.txt"),
                   "--output", str(tmp_path / "out.jsonl")])
    assert status == 0, "predict should succeed"
    results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["text"], r["label"]) for r in results] == [("the movie was good", "pos"), ("bad plot", "neg")], results
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0) for r in results), "probabilities sum to 1"
    status = main(["predict", str(model_dir), "--input", str(tmp_path / "in.txt"), "--output",
                   str(tmp_path / "int8.jsonl"), "--int8"])
    int8 = [json.loads(line) for line in (tmp_path / "int8.jsonl").read_text().splitlines()]
    assert status == 0 and [r["label"] for r in int8] == ["pos", "neg"], f"predict --int8 changed the answer: {int8}"


def test_predict_reads_stdin_and_writes_stdout(checkpoint, sentiment, tmp_path, capsys, monkeypatch):
    main(["finetune", str(checkpoint), "--task", "classification", "--train", str(sentiment), "--max-steps", "2",
          "--validation-fraction", "0", "--output-dir", str(tmp_path), *QUICK])
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("great\nawful\n"))
    assert main(["predict", str(tmp_path / "final")]) == 0, "predict from stdin should succeed"
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["great", "awful"], "one JSON line per input line"


# -- bad input: exit 2, one line ------------------------------------------------------------------------------
def three_label_checkpoint(folder: Path, checkpoint: Path) -> Path:
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(**TINY, id2label={0: "a", 1: "b", 2: "c"})).save_pretrained(folder)
    BertTokenizer.from_pretrained(checkpoint).save_pretrained(folder)
    return folder


def bad_squad(folder: Path) -> Path:
    squad = squad_json(2)
    squad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["text"] = "zebra"
    (folder / "squad.json").write_text(json.dumps(squad))
    return folder / "squad.json"


BAD_FINETUNE = {
    "unknown label in validation": (
        lambda ck, data, tmp: [str(ck), "--task", "classification", "--train", str(data), "--validation",
                               str(write_csv(tmp / "dev.csv", [{"text": "x", "label": "maybe"}]))],
        r"dev\.csv:2: label 'maybe' is not among the training labels \(neg, pos\)"),
    "missing column": (
        lambda ck, data, tmp: [str(ck), "--task", "classification", "--train", str(data), "--text-column", "review"],
        r"sentiment\.csv:2: no column 'review'"),
    "empty dataset": (
        lambda ck, data, tmp: [str(ck), "--task", "classification", "--train", str(data), "--where", "source=z"],
        r"sentiment\.csv \(rows where source=z\): no examples"),
    "label count of the head": (
        lambda ck, data, tmp: [str(three_label_checkpoint(tmp / "three", ck)), "--task", "classification",
                               "--train", str(data)],
        r"classifier head has 3 labels \(a, b, c\) but the training data has 2 \(neg, pos\)"),
    "QA answer not in context": (
        lambda ck, data, tmp: [str(ck), "--task", "qa", "--train", str(bad_squad(tmp))],
        r"question q0: answer 'zebra' does not occur in its context"),
    "malformed --where": (
        lambda ck, data, tmp: [str(ck), "--task", "classification", "--train", str(data), "--where", "source"],
        r"--where 'source': expected COLUMN=VALUE"),
    "missing training file": (
        lambda ck, data, tmp: [str(ck), "--task", "classification", "--train", str(tmp / "nope.csv")],
        r"nope\.csv: file not found"),
}


def assert_one_line_error(status: int, err: str, pattern: str) -> None:
    assert status == 2, f"bad input should exit with status 2, got {status}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, f"expected one line on stderr, got: {err}"
    assert re.search(pattern, lines[0]), f"message {lines[0]!r} should match {pattern!r}"


@pytest.mark.parametrize("case", sorted(BAD_FINETUNE))
def test_finetune_bad_input_exits_2_with_one_line(case, checkpoint, sentiment, tmp_path, capsys):
    arguments, pattern = BAD_FINETUNE[case]
    status = main(["finetune", *arguments(checkpoint, sentiment, tmp_path), "--output-dir", str(tmp_path / "out"),
                   *QUICK])
    assert_one_line_error(status, capsys.readouterr().err, pattern)


def test_predict_bad_input_exits_2_with_one_line(checkpoint, tmp_path, capsys):
    assert_one_line_error(main(["predict", str(checkpoint), "--input", "/dev/null"]), capsys.readouterr().err,
                          "cannot tell which task it was fine-tuned for")
    three = three_label_checkpoint(tmp_path / "three", checkpoint)
    (tmp_path / "in.jsonl").write_text('{"text": "good"}\n{"text": \n')
    assert_one_line_error(main(["predict", str(three), "--input", str(tmp_path / "in.jsonl")]),
                          capsys.readouterr().err, r"in\.jsonl:2: bad JSON")


def test_a_real_process_prints_no_traceback(checkpoint, sentiment, tmp_path):
    """The same path as a user's shell: a separate `python -m minibert` process, log warnings included."""
    result = subprocess.run([sys.executable, "-m", "minibert", "finetune", str(checkpoint), "--task", "ner",
                             "--train", str(sentiment), "--output-dir", str(tmp_path)],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, f"exit status should be 2: {result.stderr}"
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "expected a token and a tag" in result.stderr, f"a CSV read as CoNLL should say why: {result.stderr}"
