"""The pretraining commands: train-tokenizer writes a folder transformers loads, prepare-pretraining + pretrain
--data train, and every bad input ends with exit status 2 and one line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minibert.cli.main import main

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64)


@pytest.fixture(scope="module")
def tokenizer_dir(corpus, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("tokenizer")
    assert main(["train-tokenizer", str(corpus), "--vocab-size", "100", "--output", str(output)]) == 0
    return output


def vocab_size(tokenizer_dir: Path) -> int:
    return len((tokenizer_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())


def write_config(folder: Path, **settings) -> Path:
    path = folder / "config.json"
    path.write_text(json.dumps(settings))
    return path


def pretrain_argv(corpus: Path, tokenizer_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return ["pretrain", "--corpus", str(corpus), "--tokenizer", str(tokenizer_dir), "--output-dir", str(output_dir),
            "--max-seq-length", "32", "--dupe-factor", "1", "--eval-fraction", "0.2", "--batch-size", "4",
            "--no-progress", *extra]


def error_line(capsys, argv: list[str]) -> str:
    """Run the command, check it failed as bad input should, and return its one line of stderr."""
    status = main(argv)
    stderr = capsys.readouterr().err
    assert status == 2, f"expected exit status 2, got {status}; stderr:\n{stderr}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"minibert {argv[0]}: error: "), \
        f"expected one 'minibert {argv[0]}: error:' line, got:\n{stderr}"
    return lines[0]


def test_train_tokenizer_folder_loads_in_transformers(tokenizer_dir, corpus_sentences):
    transformers = pytest.importorskip("transformers")
    from minibert.tokenizer import BertTokenizer
    theirs = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    ours = BertTokenizer.from_pretrained(tokenizer_dir)
    for text in corpus_sentences + ["An unseen word: photosynthesis!"]:
        assert theirs(text)["input_ids"] == ours.backend.encode(text).ids, f"the two read {text!r} differently"
    assert theirs.mask_token_id == ours.mask_id and theirs.pad_token_id == 0, "special tokens differ"


def test_prepared_data_trains_mlm_only(corpus, tokenizer_dir, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["prepare-pretraining", str(corpus), "--tokenizer", str(tokenizer_dir), "--output", str(data),
                 "--max-seq-length", "32", "--dupe-factor", "2", "--no-nsp", "--eval-fraction", "0.2"]) == 0
    assert "train: " in capsys.readouterr().out, "prepare-pretraining should report what it wrote"
    config = write_config(tmp_path, vocab_size=vocab_size(tokenizer_dir), **TINY)
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(data), "--tokenizer", str(tokenizer_dir), "--config", str(config),
                 "--output-dir", str(run), "--max-steps", "2", "--batch-size", "4", "--no-progress"]) == 0
    saved = json.loads((run / "final" / "config.json").read_text())
    assert saved["architectures"] == ["BertForMaskedLM"], "data without NSP labels should train BertForMaskedLM"
    assert (run / "final" / "tokenizer.json").is_file(), "the final folder should hold the tokenizer"


@pytest.mark.parametrize("case", ["missing file", "empty corpus", "vocab size", "sequence length", "unwritable",
                                  "data options with --data"])
def test_bad_input_is_one_line_and_status_2(case, corpus, tokenizer_dir, tmp_path, capsys):
    output = tmp_path / "run"
    config = write_config(tmp_path, vocab_size=vocab_size(tokenizer_dir), **TINY)
    if case == "missing file":
        argv, expected = pretrain_argv(tmp_path / "nope.txt", tokenizer_dir, output, "--preset", "tiny"), \
            "nope.txt: corpus file not found"
    elif case == "empty corpus":
        (tmp_path / "empty.txt").write_text("")
        argv, expected = pretrain_argv(tmp_path / "empty.txt", tokenizer_dir, output, "--preset", "tiny"), \
            "empty corpus"
    elif case == "vocab size":
        wrong = write_config(tmp_path, vocab_size=1000, **TINY)
        argv, expected = pretrain_argv(corpus, tokenizer_dir, output, "--config", str(wrong)), \
            f"tokenizer has {vocab_size(tokenizer_dir)} tokens but the model config's vocab_size is 1000"
    elif case == "sequence length":
        argv, expected = pretrain_argv(corpus, tokenizer_dir, output, "--config", str(config),
                                       "--max-seq-length", "128"), \
            "max_seq_length 128 is above the model's max_position_embeddings (64)"
    elif case == "unwritable":
        (tmp_path / "a-file").write_text("")
        argv, expected = pretrain_argv(corpus, tokenizer_dir, tmp_path / "a-file" / "run", "--preset", "tiny"), \
            "--output-dir " + str(tmp_path / "a-file" / "run") + " is not writable"
    else:
        argv = ["pretrain", "--data", str(tmp_path), "--tokenizer", str(tokenizer_dir), "--preset", "tiny",
                "--output-dir", str(output), "--dupe-factor", "3"]
        expected = "data options are fixed when data is prepared"
    assert expected in error_line(capsys, argv)
    if case != "empty corpus":  # only reading the corpus finds it empty
        assert not (output / "data").exists(), "bad input should be refused before any data is prepared"


def test_resume_with_another_config_is_refused(corpus, tokenizer_dir, tmp_path, capsys):
    output = tmp_path / "run"
    first = write_config(tmp_path, vocab_size=vocab_size(tokenizer_dir), **TINY)
    assert main(pretrain_argv(corpus, tokenizer_dir, output, "--config", str(first), "--max-steps", "1")) == 0
    capsys.readouterr()  # the first run's progress lines
    (tmp_path / "other").mkdir()
    other = write_config(tmp_path / "other", vocab_size=vocab_size(tokenizer_dir), **{**TINY, "hidden_size": 16})
    line = error_line(capsys, pretrain_argv(corpus, tokenizer_dir, output, "--config", str(other), "--max-steps", "2",
                                            "--resume"))
    assert "cannot resume, the model config differs" in line and "hidden_size" in line, line


def test_the_installed_entry_point_prints_one_line(tmp_path, tokenizer_dir):
    """The same path as a user's shell: a real process, its stderr (warnings included), its exit status."""
    (tmp_path / "empty.txt").write_text("")
    done = subprocess.run([sys.executable, "-m", "minibert", *pretrain_argv(tmp_path / "empty.txt", tokenizer_dir,
                                                                           tmp_path / "run", "--preset", "tiny")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, f"exit status {done.returncode}, stderr:\n{done.stderr}"
    assert done.stderr.strip().splitlines() == [
        f"minibert pretrain: error: empty corpus: no documents in 1 file(s), e.g. {tmp_path / 'empty.txt'}"], \
        f"expected the error alone, without the empty-file warning or a traceback:\n{done.stderr}"


def test_two_processes_under_torchrun(corpus, tokenizer_dir, tmp_path):
    """Rank 0 prepares the data while rank 1 waits; both then train the same steps (DDP) and rank 0 exports."""
    config = write_config(tmp_path, vocab_size=vocab_size(tokenizer_dir), **TINY)
    output = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*torchrun, "-m", "minibert", *pretrain_argv(corpus, tokenizer_dir, output, "--config",
                                                                      str(config), "--max-steps", "3")],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, f"torchrun failed:\n{done.stderr[-3000:]}"
    assert done.stdout.count("3 steps in") == 1, f"rank 0 alone should print the summary:\n{done.stdout}"
    assert (output / "data" / "source.json").is_file() and (output / "final" / "vocab.txt").is_file(), \
        "the run should leave prepared data and a final folder with the tokenizer"
