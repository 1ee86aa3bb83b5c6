"""compare() and `minibert compare` on a tiny model and a tiny CSV: the splits are disjoint and the test set never
reaches training or validation; the random-init arm is the pretrained config with other weights; each arm's rate
is chosen on validation only; finished runs are reused, runs of other settings refused; the TF-IDF baseline; the
command end to end (two jobs at once) and its bad inputs (one line, exit 2)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minibert.cli.main import main
from minibert.comparison import arms, runs
from minibert.comparison.baseline import check_available, tfidf_baseline
from minibert.comparison.compare import compare, located, summarise
from minibert.comparison.report import caption
from minibert.comparison.runs import RunSpec, SharedSettings, plan, run_one
from minibert.comparison.splits import make_splits, write_splits
from minibert.config import BertConfig
from minibert.errors import DataError, DivergedError, MinibertError
from minibert.finetuning.kinds import task_kind
from minibert.finetuning.readers import read_conll, read_examples
from minibert.finetuning.run import DataSpec, read_task_examples, split_off_validation

from finetuning.test_run import classification_rows, make_checkpoint, write_conll, write_csv

CLASSIFICATION = task_kind("classification")
GRID = dict(seeds=(0, 1), learning_rates=(1e-3, 3e-3))
TRAINING = dict(per_device_batch_size=16, num_epochs=2, warmup_ratio=0.1)


def unique_rows(n: int) -> list[dict[str, str]]:
    rows, seen = [], set()
    for row in classification_rows(3 * n, seed=7):
        if row["text"] not in seen and len(rows) < n:
            seen.add(row["text"])
            rows.append(row)
    return rows


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("pretrained"), seed=3)


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "reviews.csv", unique_rows(200))


@pytest.fixture(scope="module")
def compared(pretrained, reviews, tmp_path_factory):
    return compare(pretrained, "classification", reviews, tmp_path_factory.mktemp("compare"), **GRID, **TRAINING)


# -- the splits ---------------------------------------------------------------------------------------------------
def texts(examples) -> set[str]:
    return {example.text for example in examples}


def test_splits_are_disjoint_and_the_test_set_is_finetunes_held_out_set(reviews, tmp_path):
    splits = make_splits(CLASSIFICATION, reviews, DataSpec())
    everything = read_task_examples(CLASSIFICATION, reviews, DataSpec())
    train, validation, test = texts(splits.train), texts(splits.validation), texts(splits.test)
    assert not (train & validation or train & test or validation & test), "the three splits should share no example"
    assert len(train) + len(validation) + len(test) == len(everything) == 200, "every example in exactly one split"
    assert test == texts(split_off_validation(everything, 0.1, 0)[1]), \
        "with the defaults the test set should be what `minibert finetune --validation-fraction 0.1` holds out"
    files = write_splits(CLASSIFICATION, splits, tmp_path)
    for name, part in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        written = read_examples(files[name], "text", label_column="label")
        assert [(e.text, e.label) for e in written] == [(e.text, e.label) for e in part], \
            f"{name}.jsonl should hold exactly the {name} split"


def test_the_test_set_never_reaches_a_run(compared):
    test = texts(read_examples(compared.output_dir / "splits" / "test.jsonl", "text", label_column="label"))
    for name in ("train", "validation"):
        seen = texts(read_examples(compared.output_dir / "splits" / f"{name}.jsonl", "text", label_column="label"))
        assert not seen & test, f"the {name} file the runs read holds test sentences"
    settings = json.loads((compared.output_dir / "results.json").read_text())["settings"]
    assert settings["split_files"]["train"].endswith("splits/train.jsonl"), "runs train on the written train split"
    assert settings["split_files"]["validation"].endswith("splits/validation.jsonl"), "and validate on its own split"


def test_labelled_sample_is_seeded_and_holds_validation_too(reviews):
    full = make_splits(CLASSIFICATION, reviews, DataSpec())
    scarce = make_splits(CLASSIFICATION, reviews, DataSpec(), labelled=50)
    assert len(scarce.train) + len(scarce.validation) == 50, "N labelled examples in all, validation included"
    assert texts(scarce.test) == texts(full.test), "the test set does not depend on --labelled"
    assert texts(scarce.train) | texts(scarce.validation) <= texts(full.train) | texts(full.validation), \
        "the sample comes from the training part only"
    again = make_splits(CLASSIFICATION, reviews, DataSpec(), labelled=50)
    assert texts(again.train) == texts(scarce.train), "the same split seed should draw the same sample"
    with pytest.raises(DataError, match="labelled 500: .*reviews.csv has only 180 training examples"):
        make_splits(CLASSIFICATION, reviews, DataSpec(), labelled=500)


def test_a_test_file_replaces_the_held_out_fraction(reviews, tmp_path):
    test_file = write_csv(tmp_path / "test.csv", [{"text": "a good one", "label": "pos"},
                                                  {"text": "an awful one", "label": "neg"}])
    splits = make_splits(CLASSIFICATION, reviews, DataSpec(), test_data=test_file)
    assert texts(splits.test) == {"a good one", "an awful one"}, "the test set should be the file's"
    assert len(splits.train) + len(splits.validation) == 200, "all of --train is then training data"


# -- the arms -------------------------------------------------------------------------------------------------------
def test_random_init_arm_has_the_pretrained_config_and_other_weights(pretrained, tmp_path):
    first = arms.write_random_init(pretrained, tmp_path / "a", seed=0)
    same = arms.write_random_init(pretrained, tmp_path / "b", seed=0)
    other = arms.write_random_init(pretrained, tmp_path / "c", seed=1)
    assert BertConfig.from_json(first / "config.json") == BertConfig.from_json(pretrained / "config.json"), \
        "random init should keep the pretrained config"
    weights = {name: load_file(folder / "model.safetensors") for name, folder in
               (("pretrained", pretrained), ("first", first), ("same", same), ("other", other))}
    assert set(weights["first"]) == set(weights["pretrained"]), "the same architecture: the same tensors"
    key = "embeddings.word_embeddings.weight"
    assert not torch.equal(weights["first"][key], weights["pretrained"][key]), "random init kept pretrained weights"
    assert not torch.equal(weights["first"][key], weights["other"][key]), "two seeds should draw different weights"
    assert all(torch.equal(weights["first"][n], weights["same"][n]) for n in weights["first"]), \
        "one seed should draw the same weights every time"
    assert (first / "vocab.txt").read_text() == (pretrained / "vocab.txt").read_text(), "the same tokenizer"
    assert arms.checkpoint_fingerprint(first) == arms.checkpoint_fingerprint(same) != \
        arms.checkpoint_fingerprint(other), "an arm is identified by its files"


# -- the comparison -------------------------------------------------------------------------------------------------
def test_compare_writes_every_run_the_summary_and_the_plot(compared):
    out = compared.output_dir
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 2 * 2 * 2, "2 arms x 2 rates x 2 seeds"
    assert set(results["summary"]["arms"]) == {"pretrained", "random init"}
    margin = results["summary"]["margins"]["pretrained - random init"]
    assert margin["verdict"] in ("significant", "within noise") and len(margin["per_seed"]) == 2, margin
    assert {"cpu", "cpu_capability", "threads", "precision"} <= set(results["machine"]), "the machine facts"
    assert results["summary"]["baseline"]["chosen"]["C"] in (1.0, 4.0, 16.0), "the TF-IDF baseline's choice"
    assert (out / "comparison.png").stat().st_size > 0 and compared.plot == out / "comparison.png"
    for run in results["runs"]:
        folder = out / "runs" / ("pretrained" if run["arm"] == "pretrained" else "random-init") / \
            f"lr{run['learning_rate']:g}" / f"seed{run['seed']}"
        assert (folder / "final" / "model.safetensors").is_file() and not (folder / "checkpoints").exists(), \
            f"{folder}: the final model is kept, the training state removed"
        assert {"accuracy", "loss"} <= set(run["test"]) and {"accuracy", "loss"} <= set(run["validation"]), run


def test_the_figure_names_the_machine_and_results_json_absolute_paths(compared, reviews, monkeypatch):
    text = caption(compared)
    machine = compared.machine
    for fact in (machine["cpu"], f"capability {machine['cpu_capability']}", f"{machine['threads']} thread(s)",
                 f"precision {machine['precision']}", "seeds 0 1", f"{compared.splits['test']} test examples"):
        assert fact in text, f"the figure's caption should name {fact!r}: {text}"
    monkeypatch.chdir(reviews.parent)
    assert located(reviews.name) == str(reviews.resolve()), "a relative data path is recorded absolute"
    assert located("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2", \
        "a hub id is recorded as given"


def test_chosen_rates_and_reported_scores_follow_the_records(compared):
    for arm, summary in compared.summary["arms"].items():
        mine = [r for r in compared.runs if r["arm"] == arm]
        means = {rate: sum(r["validation"]["accuracy"] for r in mine if r["learning_rate"] == rate) / 2
                 for rate in GRID["learning_rates"]}
        assert summary["learning_rate"] == max(means, key=means.get), f"{arm}: rate not chosen on validation"
        chosen = [r["test"]["accuracy"] for r in mine if r["learning_rate"] == summary["learning_rate"]]
        assert summary["test"] == chosen, f"{arm}: the reported test scores are not the chosen rate's"


def record(arm: str, rate: float, seed: int, validation: float, test: float) -> dict:
    return {"arm": arm, "learning_rate": rate, "seed": seed, "validation": {"accuracy": validation},
            "test": {"accuracy": test}}


def test_the_learning_rate_is_chosen_on_validation_never_on_test():
    """Validation prefers 1e-3 and test prefers 3e-3: the report must follow validation."""
    specs = [RunSpec(arm, "unused", seed, rate, "unused", {}) for arm in ("pretrained", "random init")
             for rate in (1e-3, 3e-3) for seed in (0, 1)]
    records = [record(arm, 1e-3, seed, 0.9, 0.5) for arm in ("pretrained", "random init") for seed in (0, 1)] + \
              [record(arm, 3e-3, seed, 0.6, 0.95) for arm in ("pretrained", "random init") for seed in (0, 1)]
    summary = summarise(CLASSIFICATION, specs, records, (0, 1), (1e-3, 3e-3))
    for arm in ("pretrained", "random init"):
        assert summary["arms"][arm]["learning_rate"] == 1e-3, "the rate should be the one validation prefers"
        assert summary["arms"][arm]["test"] == [0.5, 0.5], "the test scores should be those at that rate"


def test_finished_runs_are_reused(compared, pretrained, reviews, monkeypatch, capsys):
    def no_training(*args):
        raise AssertionError("a finished run with the same settings was trained again")
    monkeypatch.setattr(runs, "run_one", no_training)
    again = compare(pretrained, "classification", reviews, compared.output_dir, echo=print, **GRID, **TRAINING)
    assert again.summary["arms"] == compared.summary["arms"], "reused runs should give the same summary"
    assert "reusing 8 finished run(s)" in capsys.readouterr().out


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_runs_with_other_settings_are_refused_not_reused(compared, pretrained, reviews):
    before = folder_bytes(compared.output_dir)
    with pytest.raises(MinibertError, match=r"other settings \(splits_sha256 "):
        compare(pretrained, "classification", reviews, compared.output_dir, split_seed=1, **GRID, **TRAINING)
    assert folder_bytes(compared.output_dir) == before, \
        "a refused comparison should leave the folder as it was (its splits and random-init copies included)"
    changed = {**TRAINING, "num_epochs": 3}
    with pytest.raises(MinibertError, match=r"holds a run with other settings \(training\.num_epochs 2 -> 3\); "
                                            r"give rerun_changed"):
        compare(pretrained, "classification", reviews, compared.output_dir, **GRID, **changed)
    with pytest.raises(MinibertError, match=r"other settings \(reinit_layers 0 -> 1\)"):
        compare(pretrained, "classification", reviews, compared.output_dir, reinit_layers=1, **GRID, **TRAINING)
    spec = RunSpec("pretrained", str(pretrained), 0, 1e-3, compared.runs[0]["model_dir"].rsplit("/final", 1)[0],
                   {**compared.runs[0]["key"], "training": {"changed": True}})
    assert plan([spec], rerun_changed=True) == ([spec], []), "rerun_changed should run it again"


def test_a_diverged_run_is_a_result_and_its_rate_is_not_chosen(pretrained, reviews, tmp_path, monkeypatch):
    real_finetune = runs.finetune

    def diverging(*args, learning_rate, **kwargs):
        if learning_rate == 3e-3:
            raise DivergedError("step 3: the loss is nan")
        return real_finetune(*args, learning_rate=learning_rate, **kwargs)
    monkeypatch.setattr(runs, "finetune", diverging)
    comparison = compare(pretrained, "classification", reviews, tmp_path, seeds=(0,), learning_rates=(1e-3, 3e-3),
                         baseline="none", **TRAINING)
    diverged = [r for r in comparison.runs if r["learning_rate"] == 3e-3]
    assert all(r["validation"] is None and "loss is nan" in r["diverged"] for r in diverged), diverged
    assert all(arm["learning_rate"] == 1e-3 for arm in comparison.summary["arms"].values()), \
        "a rate whose runs diverged should not be chosen"


def test_pooling_and_reinit_layers_reach_every_run_of_every_arm(pretrained, reviews, tmp_path, monkeypatch):
    real_finetune, seen = runs.finetune, []

    def recording(checkpoint, *args, **kwargs):
        seen.append((checkpoint, kwargs["pooling"], kwargs["reinit_layers"]))
        return real_finetune(checkpoint, *args, **kwargs)
    monkeypatch.setattr(runs, "finetune", recording)
    comparison = compare(pretrained, "classification", reviews, tmp_path, references=[f"again={pretrained}"],
                         seeds=(0,), learning_rates=(1e-3,), baseline="none", pooling="mean", reinit_layers=1,
                         **TRAINING)
    assert [setting for _, *setting in seen] == [["mean", 1]] * 3, f"every arm's run should get them: {seen}"
    assert [run["arm"] for run in comparison.runs] == ["pretrained", "random init", "again"], comparison.runs
    for run in comparison.runs:
        saved = BertConfig.from_json(Path(run["model_dir"]) / "config.json")
        assert saved.classifier_pooling == "mean", f"{run['arm']}: the saved head should read the mean"
    settings = json.loads((tmp_path / "results.json").read_text())["settings"]
    assert (settings["pooling"], settings["reinit_layers"]) == ("mean", 1), "results.json should record them"


def test_other_task_kinds_compare_too(pretrained, tmp_path):
    data = write_conll(tmp_path / "ner.txt", 120)
    comparison = compare(pretrained, "ner", data, tmp_path / "out", seeds=(0,), learning_rates=(3e-3,), **TRAINING)
    assert read_conll(tmp_path / "out" / "splits" / "test.conll"), "ner splits are written as CoNLL"
    assert comparison.metric == "f1" and comparison.summary["baseline"] is None, "no TF-IDF baseline for ner"
    assert comparison.summary["margins"]["pretrained - random init"]["verdict"] == "one seed: no interval"


# -- the baseline ---------------------------------------------------------------------------------------------------
def test_tfidf_baseline_on_a_toy_set(reviews):
    splits = make_splits(CLASSIFICATION, reviews, DataSpec())
    result = tfidf_baseline(CLASSIFICATION, splits.train, splits.validation, splits.test)
    assert len(result["grid"]) == 6, "words and words+bigrams, C in 1, 4, 16"
    best = max(result["grid"], key=lambda row: row["validation"]["accuracy"])
    assert result["validation"]["accuracy"] == best["validation"]["accuracy"], "chosen on validation"
    assert result["test"]["accuracy"] >= 0.9, f"one signal word is easy for TF-IDF: {result['test']}"


def test_a_missing_scikit_learn_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(MinibertError, match=r"needs scikit-learn: pip install 'minibert\[compare\]'"):
        check_available(CLASSIFICATION)
    assert check_available(task_kind("ner")) is False, "ner has no baseline, and needs no scikit-learn"


# -- the command ----------------------------------------------------------------------------------------------------
QUICK = ["--seeds", "0", "1", "--learning-rates", "1e-3", "3e-3", "--epochs", "2", "--batch-size", "16"]


def test_cli_end_to_end_with_two_jobs(pretrained, reviews, tmp_path, capsys):
    status = main(["compare", str(pretrained), "--task", "classification", "--train", str(reviews),
                   "--output-dir", str(tmp_path), "--jobs", "2", *QUICK])
    out = capsys.readouterr().out
    assert status == 0, out
    assert re.search(r"margin pretrained - random init: [+-]\d+\.\d \u00b1 \d+\.\d \(per seed", out), out
    assert "TF-IDF + logistic reg." in out and "machine: " in out and "2 runs at a time" in out, out
    for name in ("results.json", "comparison.png", "splits/train.jsonl", "splits/validation.jsonl",
                 "splits/test.jsonl"):
        assert (tmp_path / name).is_file(), f"{name} should be written"
    runs_done = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert len(runs_done) == 8 and all(run["threads"] == 1 for run in runs_done), "each job runs on one thread"
    assert main(["compare", str(pretrained), "--task", "classification", "--train", str(reviews),
                 "--output-dir", str(tmp_path), *QUICK]) == 0
    assert "reusing 8 finished run(s)" in capsys.readouterr().out, "a second run should reuse the first's"


def finish_when_told(spec: RunSpec, shared: SharedSettings) -> dict:
    """A stand-in for run_one in a worker process: "first" finishes at once, "second" only once the parent has
    reported "first" (it writes spec.folder), or after a minute."""
    import time
    if spec.arm == "second":
        for _ in range(600):
            if Path(spec.folder).exists():
                return {"arm": spec.arm, "waited": False}
            time.sleep(0.1)
        return {"arm": spec.arm, "waited": True}
    return {"arm": spec.arm}


def test_parallel_runs_are_reported_as_each_finishes_not_at_the_end(tmp_path):
    flag = tmp_path / "first reported"
    specs = [RunSpec("first", "", 0, 1e-3, str(flag), {}), RunSpec("second", "", 0, 1e-3, str(flag), {})]
    shared = SharedSettings("classification", {}, DataSpec(), 32, None, None, 0, {})
    reported = []

    def done(record):
        reported.append(record["arm"])
        flag.touch()
    records = runs.run_all(specs, shared, 2, done, work=finish_when_told)
    assert reported == ["first", "second"], reported
    second = next(record for record in records if record["arm"] == "second")
    assert second["waited"] is False, "the first run's line should be printed while the second still runs"


def one_class(tmp_path: Path) -> list[str]:
    return ["--train", str(write_csv(tmp_path / "one.csv", [{"text": f"good {i}", "label": "pos"}
                                                            for i in range(30)]))]


BAD = {
    "unknown task": (lambda tmp, data: ["--task", "sentiment", "--train", str(data)], r"invalid choice: 'sentiment'"),
    "missing file": (lambda tmp, data: ["--task", "classification", "--train", str(tmp / "nope.csv")],
                     r"nope\.csv: file not found"),
    "more labels asked than there are": (
        lambda tmp, data: ["--task", "classification", "--train", str(data), "--labelled", "1000"],
        r"--labelled 1000: .*has only 180 training examples"),
    "one class": (lambda tmp, data: ["--task", "classification", *one_class(tmp)],
                  r"every training example has the label 'pos'"),
    "more layers re-initialised than the model has": (
        lambda tmp, data: ["--task", "classification", "--train", str(data), "--reinit-layers", "3"],
        r"--reinit-layers 3: pretrained \(.*\) has only 2 layers"),
    "a pooling for ner": (lambda tmp, data: ["--task", "ner", "--train", str(data), "--pooling", "mean"],
                          r"--pooling applies to classification and regression heads, not ner"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2(case, pretrained, reviews, tmp_path, capsys):
    arguments, pattern = BAD[case]
    status = main(["compare", str(pretrained), *arguments(tmp_path, reviews), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, f"{case}: {err}"
    assert re.search(pattern, err), f"{case}: {err!r} should match {pattern!r}"
    assert not (tmp_path / "out" / "runs").exists(), f"{case}: refused before any run"
