"""`minibert pretrain --objective electra`: a run end to end (its discriminator fine-tuned, its generator filling
masks), under torchrun, and the refusals: resuming with another objective, NSP data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minibert.cli.main import main

from .test_cli_pretrain import TINY, error_line, tokenizer_dir, vocab_size, write_config  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def config(tokenizer_dir, tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("config"), vocab_size=vocab_size(tokenizer_dir), **TINY)


def pretrain_argv(corpus: Path, tokenizer_dir: Path, config: Path, output_dir: Path, *extra: str) -> list[str]:
    return ["pretrain", "--corpus", str(corpus), "--tokenizer", str(tokenizer_dir), "--config", str(config),
            "--output-dir", str(output_dir), "--max-seq-length", "32", "--dupe-factor", "1", "--eval-fraction", "0.2",
            "--batch-size", "4", "--no-progress", *extra]


def test_electra_end_to_end(corpus, corpus_sentences, tokenizer_dir, config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(pretrain_argv(corpus, tokenizer_dir, config, run, "--objective", "electra", "--max-steps", "3")) == 0
    out = capsys.readouterr().out
    assert "replaced-token detection accuracy" in out and "generator MLM accuracy" in out, \
        f"the summary should show the discriminator's and the generator's held-out figures:\n{out}"
    final, generator = run / "final", run / "final" / "generator"
    assert f"generator (a masked LM, for fill-mask): {generator}" in out, out
    assert json.loads((final / "config.json").read_text())["architectures"] == ["BertModel"], \
        "final/ should hold the discriminator as a plain BERT encoder"
    assert json.loads((generator / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    assert (final / "rtd_head.safetensors").is_file(), "the discriminator's head should be kept beside it"
    for folder in (final, generator):
        assert (folder / "vocab.txt").is_file() and (folder / "tokenizer.json").is_file(), f"{folder}: no tokenizer"
    trained = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "weighted_rtd_loss" in trained[-1] and "eval_rtd_accuracy" in trained[-1], trained[-1]

    assert main(["fill-mask", str(generator), "the cat sat on the [MASK]."]) == 0
    assert capsys.readouterr().out.startswith("[MASK] 1: "), "fill-mask should run on the generator"

    rows = [f"{sentence},{'pos' if i % 2 else 'neg'}" for i, sentence in enumerate(corpus_sentences * 8)]
    (tmp_path / "labelled.csv").write_text("\n".join(["text,label", *rows]) + "\n", encoding="utf-8")
    status = main(["finetune", str(final), "--task", "classification", "--train", str(tmp_path / "labelled.csv"),
                   "--validation-fraction", "0.25", "--epochs", "1", "--batch-size", "8", "--max-length", "32",
                   "--no-progress", "--output-dir", str(tmp_path / "finetuned")])
    out, err = capsys.readouterr()
    assert status == 0, f"fine-tuning the discriminator should work:\n{out}\n{err}"


@pytest.mark.parametrize("first, then", [("mlm", "electra"), ("electra", "mlm")])
def test_resume_with_another_objective_is_refused(first, then, corpus, tokenizer_dir, config, tmp_path, capsys):
    output = tmp_path / "run"
    assert main(pretrain_argv(corpus, tokenizer_dir, config, output, "--objective", first, "--max-steps", "1")) == 0
    capsys.readouterr()
    line = error_line(capsys, pretrain_argv(corpus, tokenizer_dir, config, output, "--objective", then,
                                            "--max-steps", "2", "--resume"))
    assert f"cannot resume with --objective {then}, the checkpoint was trained with {first}" in line, line


def test_electra_refuses_nsp_data(corpus, tokenizer_dir, config, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["prepare-pretraining", str(corpus), "--tokenizer", str(tokenizer_dir), "--output", str(data),
                 "--max-seq-length", "32", "--dupe-factor", "1", "--eval-fraction", "0.2"]) == 0
    capsys.readouterr()
    line = error_line(capsys, ["pretrain", "--data", str(data), "--tokenizer", str(tokenizer_dir), "--config",
                               str(config), "--output-dir", str(tmp_path / "run"), "--objective", "electra"])
    assert "--objective electra has no next-sentence prediction" in line and "--no-nsp" in line, line
    assert not (tmp_path / "run").exists(), "refused before anything was written"


def test_two_processes_under_torchrun(corpus, tokenizer_dir, config, tmp_path):
    """DDP waits for every parameter's gradient at every step: a parameter left out of the loss would hang or fail
    here. Both ranks train the same steps and rank 0 exports."""
    output = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*torchrun, "-m", "minibert", *pretrain_argv(corpus, tokenizer_dir, config, output,
                                                                      "--objective", "electra", "--max-steps", "3")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, f"torchrun failed:\n{done.stderr[-3000:]}"
    assert done.stdout.count("3 steps in") == 1, f"rank 0 alone should print the summary:\n{done.stdout}"
    assert (output / "final" / "generator" / "vocab.txt").is_file(), "rank 0 should export both folders"


def test_a_recipe_can_name_the_objective(corpus, tokenizer_dir, config, tmp_path, capsys, monkeypatch):
    from minibert.pretraining import recipes
    monkeypatch.setitem(recipes.RECIPES, "electra-test", recipes.Recipe("ELECTRA, for this test", objective="electra"))
    run = tmp_path / "run"
    assert main(pretrain_argv(corpus, tokenizer_dir, config, run, "--recipe", "electra-test", "--max-steps", "1")) == 0
    assert "replaced-token detection accuracy" in capsys.readouterr().out, "the recipe's objective should be used"
    assert (run / "final" / "generator" / "config.json").is_file(), "an ELECTRA run writes final/generator/"
