"""`minibert pretrain --recipe`: a recipe supplies model, data and training settings, flags given override it, and
the default stays the original BERT settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from minibert.cli.main import build_parser, main
from minibert.cli.pretrain import training_settings
from minibert.pretraining.examples import PretrainingOptions
from minibert.pretraining.recipes import DEFAULT_RECIPE, RECIPES, Recipe
from minibert.training.args import TrainingArguments


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["pretrain", "--corpus", "c.txt", "-o", "out", *argv])


def checkpoint_record(output: Path) -> dict:
    index = json.loads((output / "checkpoints" / "index.json").read_text())
    return json.loads((output / "checkpoints" / index["last"] / "trainer.json").read_text())


def test_the_default_recipe_is_the_original_bert_settings():
    assert DEFAULT_RECIPE == "bert" and parse("--preset", "tiny").recipe == "bert"
    bert = RECIPES["bert"]
    assert bert.options() == PretrainingOptions(), "bert's data options should be the original script's defaults"
    settings = TrainingArguments("out", **training_settings(parse("--preset", "tiny"), bert))
    assert (settings.learning_rate, settings.weight_decay, settings.per_device_batch_size) == (1e-4, 0.01, 32), \
        f"bert's training settings changed: {settings}"


def test_flags_override_the_recipe_and_drop_what_they_exclude():
    recipe = Recipe("test", training=dict(max_steps=100, warmup_ratio=0.1, learning_rate=1e-3, weight_decay=0.0))
    settings = training_settings(parse("--epochs", "2", "--warmup-steps", "5", "--lr", "3e-4"), recipe)
    assert settings == {"num_epochs": 2, "warmup_steps": 5, "learning_rate": 3e-4, "weight_decay": 0.0}, \
        f"--epochs should replace the recipe's max_steps, --warmup-steps its warmup_ratio: {settings}"


def test_cpu_recipe_runs_with_nothing_but_a_corpus(corpus, tmp_path, capsys):
    output = tmp_path / "run"
    assert main(["pretrain", "--corpus", str(corpus), "--recipe", "cpu", "-o", str(output), "--max-steps", "3",
                 "--max-seq-length", "32", "--eval-fraction", "0.2", "--batch-size", "4", "--lr", "1e-3",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "[MASK]" in printed and "unigram guess" in printed, f"the summary should split MLM accuracy:\n{printed}"
    cpu = RECIPES["cpu"]
    assert (output / "tokenizer" / "vocab.txt").is_file(), "without --tokenizer the recipe learns one"
    config = json.loads((output / "final" / "config.json").read_text())
    for key, value in cpu.model.items():
        assert config[key] == value, f"final/config.json {key} is {config[key]}, the recipe says {value}"
    assert config["architectures"] == ["BertForMaskedLM"], "the cpu recipe is MLM-only"
    data = json.loads((output / "data" / "source.json").read_text())["options"]
    assert data["dynamic_masking"] is True and data["max_seq_length"] == 32, \
        f"the recipe's data options with the flag on top expected, got {data}"
    args = checkpoint_record(output)["args"]
    assert args["learning_rate"] == 1e-3 and args["per_device_batch_size"] == 4 and args["max_steps"] == 3, \
        f"flags should win over the recipe: {args}"
    assert args["warmup_ratio"] == cpu.training["warmup_ratio"], f"the recipe's warm-up should stay: {args}"
    # A second run with the same corpus reuses the vocabulary it learnt (it replaces the first run, so it says so).
    learnt = (output / "tokenizer" / "learnt_from.json").stat().st_mtime_ns
    assert main(["pretrain", "--corpus", str(corpus), "--recipe", "cpu", "-o", str(output), "--max-steps", "1",
                 "--max-seq-length", "32", "--eval-fraction", "0.2", "--batch-size", "4", "--no-progress",
                 "--overwrite-output-dir"]) == 0
    assert (output / "tokenizer" / "learnt_from.json").stat().st_mtime_ns == learnt, "the vocabulary was relearnt"


def test_bert_recipe_without_a_model_size_is_one_line(corpus, tmp_path, capsys):
    status = main(["pretrain", "--corpus", str(corpus), "-o", str(tmp_path)])
    error = capsys.readouterr().err.strip()
    assert status == 2 and "names no model size" in error and len(error.splitlines()) == 1, error


@pytest.fixture
def captured(monkeypatch, tmp_path) -> dict:
    """What `minibert pretrain` passes to the library's pretrain(), which is replaced by a recorder."""
    from types import SimpleNamespace
    calls: dict = {}

    def recorder(args, tokenizer, **kwargs):
        calls.update(kwargs, args=args, tokenizer=tokenizer)
        return SimpleNamespace(steps=0, wall_time_s=0.0, tokens_per_s=0.0, final_metrics={}, output_dir=tmp_path)

    monkeypatch.setattr("minibert.pretraining.run.pretrain", recorder)
    return calls


@pytest.fixture
def vocab(tmp_path) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("flags, init, model", [
    ([], "distributional", "recipe"),
    (["--init", "bert"], "bert", "recipe"),
    (["--preset", "tiny"], "distributional", "tiny"),
    (["--preset", "tiny", "--init", "bert"], "bert", "tiny"),
    (["--init-from", "some/checkpoint"], "bert", None),
])
def test_init_and_model_flags_win_over_the_cpu_recipe(captured, vocab, corpus, tmp_path, flags, init, model):
    assert main(["pretrain", "--corpus", str(corpus), "--tokenizer", str(vocab), "--recipe", "cpu",
                 "-o", str(tmp_path / "run"), "--max-seq-length", "32", *flags]) == 0
    assert captured["init"] == init, f"{flags}: init {captured['init']!r}, expected {init!r}"
    if model == "recipe":
        config = captured["model"]
        assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (128, 2, 7), \
            f"the recipe's model sized to the tokenizer expected, got {config}"
    else:
        assert captured["model"] == model, f"{flags}: model {captured['model']!r}, expected {model!r}"
    options = captured["options"]
    assert (options.max_seq_length, options.nsp, options.dynamic_masking) == (32, False, True), \
        f"the recipe's data options with --max-seq-length on top expected, got {options}"
    assert captured["args"].learning_rate == RECIPES["cpu"].training["learning_rate"], "the recipe's lr should stay"


def test_the_bert_recipe_adds_nothing_to_the_flags(captured, vocab, corpus, tmp_path):
    assert main(["pretrain", "--corpus", str(corpus), "--tokenizer", str(vocab), "--preset", "tiny",
                 "-o", str(tmp_path / "run")]) == 0
    assert (captured["init"], captured["model"], captured["options"]) == ("bert", "tiny", None), \
        f"the default recipe should leave BERT's initialisation and the original data options: {captured}"
    assert captured["args"].learning_rate == 1e-4 and captured["args"].max_steps is None, captured["args"]
