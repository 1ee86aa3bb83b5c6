"""Bad inputs and faults, one row each, as a user meets them on the command line.

Every row runs one `minibert` command and asserts: its exit status; exactly one line on stderr, without a
traceback, naming the file, key or flag at fault (as the user typed it); and that every earlier output (the shared
checkpoints, data and runs of bad_input_world, and the row's own earlier outputs) is byte-identical afterwards.
Rows whose command succeeds (a changed schedule on resume, a stale lock taken over) check the one line they must
print, and what they must have done. Rows run in this process (`main(argv)`); the faults that need a real process
(two runs at once, a signal during preparation, a full filesystem) are the tests at the end of the module.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from minibert.cli.main import main
from minibert.plumbing.atomic_files import host_name, process_alive
from minibert.pretraining.objective import PretrainingTask

from bad_input_world import (World, build_world, changed, fingerprint, minibert_process, temporaries,
                             wait_for)
from finetuning.test_run import VOCAB, classification_rows, squad_json, write_csv

PROGRESS_LINE = re.compile(r"^step \d+/\d+ ")  # what --no-progress prints while a run goes well


@dataclass
class Row:
    argv: list[str]
    expect: tuple[str, ...]  # each must be in the one stderr line
    status: int = 2
    keep: tuple[Path, ...] = ()  # this row's earlier outputs, byte-identical afterwards (the world's always are)
    lines: int = 1  # stderr lines, progress lines of a successful run not counted
    check: Callable[[], None] | None = None  # what else the row must have done (or not done)


ROWS: dict[str, Callable[[World, Path, pytest.MonkeyPatch], Row]] = {}


def row(name: str):
    def register(make: Callable[[World, Path, pytest.MonkeyPatch], Row]):
        ROWS[name] = make
        return make
    return register


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


def stderr_lines(status: int, err: str) -> list[str]:
    lines = err.strip().splitlines()
    return [line for line in lines if not PROGRESS_LINE.match(line)] if status == 0 else lines


# -- flags: a bad value is refused by the parser, naming the flag as typed ------------------------------------
def texts_file(tmp: Path) -> Path:
    (tmp / "texts.txt").write_text("the film was good\nthe plot was bad\n", encoding="utf-8")
    return tmp / "texts.txt"


COMMANDS: dict[str, Callable[[World, Path], list[str]]] = {
    "embed": lambda w, tmp: ["embed", str(w.encoder), "--input", str(texts_file(tmp)), "--output",
                             str(tmp / "v.npy")],
    "predict": lambda w, tmp: ["predict", str(w.classifier), "--input", str(texts_file(tmp))],
    "fill-mask": lambda w, tmp: ["fill-mask", str(w.mlm), "the film was [MASK] ."],
    "finetune": lambda w, tmp: w.finetune(tmp / "out"),
    "pretrain": lambda w, tmp: w.pretrain(tmp / "out"),
    "prepare-pretraining": lambda w, tmp: ["prepare-pretraining", str(w.corpus), "--tokenizer", str(w.encoder),
                                           "--output", str(tmp / "data")],
    "train-tokenizer": lambda w, tmp: ["train-tokenizer", str(w.corpus), "--vocab-size", "60", "--output",
                                       str(tmp / "tok")],
    "parity": lambda w, tmp: ["parity", str(w.encoder)],
}
BAD_FLAGS = [
    ("embed", "--batch-size", "-3"), ("embed", "--batch-size", "0"), ("embed", "--max-length", "0"),
    ("embed", "--encoding", "klingon"), ("predict", "--batch-size", "0"), ("predict", "--batch-size", "-2"),
    ("predict", "--batch-size", "two"), ("fill-mask", "--top-k", "0"), ("fill-mask", "--top-k", "-1"),
    ("finetune", "--lr", "-0.0001"), ("finetune", "--lr", "nan"), ("finetune", "--lr", "inf"),
    ("finetune", "--batch-size", "0"), ("finetune", "--epochs", "0"), ("finetune", "--warmup-ratio", "1.5"),
    ("finetune", "--weight-decay", "-1"), ("finetune", "--validation-fraction", "1.0"),
    ("finetune", "--grad-accumulation", "0"), ("finetune", "--max-length", "0"), ("finetune", "--encoding", "utf-99"),
    ("finetune", "--early-stopping", "0"), ("pretrain", "--lr", "-0.1"), ("pretrain", "--lr", "nan"),
    ("pretrain", "--batch-size", "0"), ("pretrain", "--max-steps", "0"), ("pretrain", "--warmup-ratio", "-0.1"),
    ("pretrain", "--eval-fraction", "2"), ("pretrain", "--masked-lm-prob", "1.5"), ("pretrain", "--max-minutes", "0"),
    ("pretrain", "--log-every", "0"), ("pretrain", "--grad-accum", "-1"),
    ("prepare-pretraining", "--dupe-factor", "0"), ("prepare-pretraining", "--max-seq-length", "-5"),
    ("train-tokenizer", "--vocab-size", "0"), ("parity", "--tolerance", "-1"),
    ("predict", "--n-best", "0"), ("predict", "--null-score-threshold", "nan"),
    ("finetune", "--max-answer-length", "0"),
]


def flag_row(command: str, flag: str, value: str):
    def make(w: World, tmp: Path, patch: pytest.MonkeyPatch) -> Row:
        return Row([*COMMANDS[command](w, tmp), flag, value], (f"minibert {command}: error: argument", flag, value),
                   check=lambda: assert_nothing_written(tmp))
    return make


def assert_nothing_written(tmp: Path) -> None:
    made = sorted(p.name for p in tmp.iterdir() if p.name != "texts.txt")
    assert not made, f"a refused command left {made}"


for _command, _flag, _value in BAD_FLAGS:
    row(f"flag {_command} {_flag} {_value}")(flag_row(_command, _flag, _value))


@row("flags --resume and --overwrite-output-dir together")
def _(w, tmp, patch):
    return Row(w.pretrain(tmp / "out", "--resume", "--overwrite-output-dir"),
               ("--overwrite-output-dir", "not allowed with argument --resume"))


@row("an unknown flag")
def _(w, tmp, patch):
    return Row([*COMMANDS["embed"](w, tmp), "--pooling-mode", "mean"], ("unrecognized arguments: --pooling-mode",))


@row("--top-k above the vocabulary")
def _(w, tmp, patch):
    return Row([*COMMANDS["fill-mask"](w, tmp), "--top-k", "1000"],
               (f"--top-k must be between 1 and the vocabulary size ({len(VOCAB)}), got 1000",))


# -- devices -------------------------------------------------------------------------------------------------------
@row("finetune --device cuda without CUDA")
def _(w, tmp, patch):
    patch.setattr(torch.cuda, "is_available", lambda: False)
    return Row(w.finetune(tmp / "out", "--device", "cuda"), ("--device cuda: CUDA is not available here",),
               check=lambda: assert_nothing_written(tmp))


@row("pretrain --device cuda without CUDA")
def _(w, tmp, patch):
    patch.setattr(torch.cuda, "is_available", lambda: False)
    return Row(w.pretrain(tmp / "out", "--device", "cuda"), ("--device cuda: CUDA is not available here",),
               check=lambda: assert_nothing_written(tmp))


@row("--device cuda:3 on a machine with one GPU")
def _(w, tmp, patch):
    patch.setattr(torch.cuda, "is_available", lambda: True)
    patch.setattr(torch.cuda, "device_count", lambda: 1)
    return Row(w.pretrain(tmp / "out", "--device", "cuda:3"), ("--device cuda:3: this machine has 1 CUDA device",))


@row("--device that is not a device")
def _(w, tmp, patch):
    return Row(w.finetune(tmp / "out", "--device", "gpu0"), ("--device gpu0: not a device name",))


# -- text encodings: a Latin-1 file is ordinary data ---------------------------------------------------------------
def latin1_csv(tmp: Path) -> Path:
    rows = classification_rows(40)
    rows[1]["text"] = "the café was good"  # line 3: header, row 1, row 2
    path = tmp / "latin1.csv"
    path.write_bytes(write_csv(tmp / "utf8.csv", rows).read_text(encoding="utf-8").encode("latin-1"))
    return path


def latin1_lines(tmp: Path) -> Path:
    path = tmp / "latin1.txt"
    path.write_bytes("the film was good\nthe café was bad\n".encode("latin-1"))
    return path


@row("finetune a Latin-1 CSV without --encoding")
def _(w, tmp, patch):
    data = latin1_csv(tmp)
    return Row(w.finetune(tmp / "out", train=data), (f"{data}:3: byte 0xe9 (column 8) is not valid utf-8",
                                                     "--encoding"), keep=(data,))


@row("finetune a Latin-1 CSV with --encoding latin-1")
def _(w, tmp, patch):
    data = latin1_csv(tmp)

    def check():
        assert (tmp / "out" / "final" / "model.safetensors").is_file(), "the run should have finished"
    return Row(w.finetune(tmp / "out", "--encoding", "latin-1", "--max-steps", "1", train=data), (), status=0,
               lines=0, keep=(data,), check=check)


@row("finetune a Latin-1 CoNLL file")
def _(w, tmp, patch):
    data = tmp / "ner.conll"
    data.write_bytes("alice\tB-PER\nwas\tO\n\nthe\tO\ncafé\tB-LOC\n".encode("latin-1"))
    return Row(w.finetune(tmp / "out", task="ner", train=data), (f"{data}:5: byte 0xe9", "--encoding"))


@row("finetune a Latin-1 SQuAD file")
def _(w, tmp, patch):
    data = tmp / "squad.json"
    data.write_bytes(json.dumps(squad_json(4), ensure_ascii=False).replace("who", "whé").encode("latin-1"))
    return Row(w.finetune(tmp / "out", task="qa", train=data), (f"{data}:1: byte 0xe9", "--encoding"))


@row("predict a Latin-1 input without --encoding")
def _(w, tmp, patch):
    data = latin1_lines(tmp)
    return Row(["predict", str(w.classifier), "--input", str(data)],
               (f"{data}:2: byte 0xe9 (column 8) is not valid utf-8", "--encoding (e.g. latin-1"))


@row("predict a Latin-1 input with --encoding latin-1")
def _(w, tmp, patch):
    data = latin1_lines(tmp)

    def check():
        texts = [json.loads(line)["text"] for line in (tmp / "out.jsonl").read_text(encoding="utf-8").splitlines()]
        assert texts == ["the film was good", "the café was bad"], f"decoded as {texts}"
    return Row(["predict", str(w.classifier), "--input", str(data), "--encoding", "latin-1", "--output",
                str(tmp / "out.jsonl")], ("wrote 2 classification predictions",), status=0, check=check)


@row("embed a Latin-1 input without --encoding")
def _(w, tmp, patch):
    data = latin1_lines(tmp)
    return Row(["embed", str(w.encoder), "--input", str(data), "--output", str(tmp / "v.npy")],
               (f"{data}:2: byte 0xe9", "--encoding"), check=lambda: assert_nothing_written_but(tmp, data))


def assert_nothing_written_but(tmp: Path, *inputs: Path) -> None:
    made = sorted(p.name for p in tmp.iterdir() if p not in inputs)
    assert not made, f"a failed command left {made}"


# -- output files ------------------------------------------------------------------------------------------------
@row("predict -o naming a folder")
def _(w, tmp, patch):
    (tmp / "results").mkdir()
    return Row(["predict", str(w.classifier), "--input", str(texts_file(tmp)), "-o", str(tmp / "results")],
               (f"--output {tmp / 'results'}: is a folder",), keep=(tmp / "results",))


@row("embed -o naming a folder")
def _(w, tmp, patch):
    (tmp / "v.npy").mkdir()
    return Row(["embed", str(w.encoder), "--input", str(texts_file(tmp)), "-o", str(tmp / "v.npy")],
               (f"--output {tmp / 'v.npy'}: is a folder",))


@row("embed -o with an unknown extension")
def _(w, tmp, patch):
    return Row(["embed", str(w.encoder), "--input", str(texts_file(tmp)), "-o", str(tmp / "v.txt")],
               ("--output", "v.txt: use a .npy or .jsonl file name"))


@row("predict -o inside a file")
def _(w, tmp, patch):
    (tmp / "a-file").write_text("")
    return Row(["predict", str(w.classifier), "--input", str(texts_file(tmp)), "-o", str(tmp / "a-file" / "o.jsonl")],
               ("--output", "o.jsonl: cannot be written", "a-file is a file"))


@row("embed --input missing")
def _(w, tmp, patch):
    return Row(["embed", str(w.encoder), "--input", str(tmp / "nope.txt"), "-o", str(tmp / "v.npy")],
               (f"{tmp / 'nope.txt'}: file not found",))


@row("predict an empty input")
def _(w, tmp, patch):
    (tmp / "empty.txt").write_text("\n\n")
    return Row(["predict", str(w.classifier), "--input", str(tmp / "empty.txt")],
               (f"{tmp / 'empty.txt'}: no records to predict",))


# -- training data ---------------------------------------------------------------------------------------------------
def squad_with(tmp: Path, answer_start) -> Path:
    squad = squad_json(4)
    squad["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] = answer_start
    (tmp / "squad.json").write_text(json.dumps(squad), encoding="utf-8")
    return tmp / "squad.json"


for _label, _value in (("text", "abc"), ("null", None), ("a fraction", 3.5), ("negative", -1)):
    @row(f"SQuAD answer_start that is {_label}")
    def _(w, tmp, patch, value=_value):
        data = squad_with(tmp, value)
        return Row(w.finetune(tmp / "out", task="qa", train=data),
                   (str(data), f"question q1: answer_start {json.dumps(value)} is not a character position",))


def regression_csv(tmp: Path, bad: str) -> Path:
    rows = [{"text": r["text"], "label": str(i % 3)} for i, r in enumerate(classification_rows(40))]
    rows[2]["label"] = bad  # line 4
    return write_csv(tmp / "scores.csv", rows)


for _bad in ("nan", "inf", "-Infinity", "high"):
    @row(f"regression label {_bad}")
    def _(w, tmp, patch, bad=_bad):
        data = regression_csv(tmp, bad)
        return Row(w.finetune(tmp / "out", task="regression", train=data), (f"{data}:4: score '{bad}' is not a",),
                   check=lambda: assert_nothing_written_but(tmp, data))


@row("GLUE STS-B score nan")
def _(w, tmp, patch):
    data = tmp / "train.tsv"
    data.write_text("sentence1\tsentence2\tscore\nthe film\tthe movie\t4.0\na plot\tthe story\tnan\n", encoding="utf-8")
    return Row(w.finetune(tmp / "out", "--glue", "stsb", task="regression", train=data),
               (f"{data}:3: score 'nan' is not a finite number",))


@row("a one-class training set")
def _(w, tmp, patch):
    data = write_csv(tmp / "pos.csv", [{**r, "label": "pos"} for r in classification_rows(40)])
    return Row(w.finetune(tmp / "out", train=data),
               (f"{data}: every training example has the label 'pos'", "at least two classes"),
               check=lambda: assert_nothing_written_but(tmp, data))


@row("a one-tag NER training set")
def _(w, tmp, patch):
    data = tmp / "o.conll"
    data.write_text("the\tO\nfilm\tO\n\na\tO\nplot\tO\n\nthe\tO\nstory\tO\n", encoding="utf-8")
    return Row(w.finetune(tmp / "out", task="ner", train=data), (f"{data}: every training token has the tag 'O'",))


@row("finetune --train missing")
def _(w, tmp, patch):
    return Row(w.finetune(tmp / "out", train=tmp / "nope.csv"), (f"{tmp / 'nope.csv'}: file not found",))


@row("fewer examples than one step reads")
def _(w, tmp, patch):
    return Row(w.finetune(tmp / "out", "--batch-size", "64"),
               ("fewer than one optimizer step reads (64 = --batch-size x --grad-accumulation x 1 processes)",),
               check=lambda: assert_nothing_written(tmp))


@row("--early-stopping without a validation set")
def _(w, tmp, patch):
    return Row(w.finetune(tmp / "out", "--early-stopping", "2", "--validation-fraction", "0"),
               ("--early-stopping needs a validation set (--validation, or --validation-fraction above 0)",))


@row("--max-minutes with --resume")
def _(w, tmp, patch):
    return Row(w.pretrain(w.pretrain_run, "--max-minutes", "1", "--resume"),
               ("--max-minutes cannot resume a run", "--max-steps"))


@row("prepared data with a damaged meta.json")
def _(w, tmp, patch):
    data = w.copy(w.data, tmp)
    (data / "train" / "meta.json").write_text("{", encoding="utf-8")
    return Row(w.pretrain(tmp / "out", data=data), (f"{data / 'train' / 'meta.json'}: not valid JSON",), keep=(data,))


@row("--data that was never prepared")
def _(w, tmp, patch):
    (tmp / "empty").mkdir()
    return Row(w.pretrain(tmp / "out", data=tmp / "empty"), (f"{tmp / 'empty'}: no prepared data here",))


# -- tokenizers ------------------------------------------------------------------------------------------------------
@row("a tokenizer.json that is not JSON")
def _(w, tmp, patch):
    model = w.copy(w.encoder, tmp)
    (model / "tokenizer.json").write_text("{not json", encoding="utf-8")
    return Row(["embed", str(model), "--input", str(texts_file(tmp)), "-o", str(tmp / "v.npy")],
               (f"{model / 'tokenizer.json'}: not a valid tokenizer.json",), keep=(model,))


@row("a tokenizer.json of another kind")
def _(w, tmp, patch):
    model = w.copy(w.classifier, tmp)
    (model / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}', encoding="utf-8")
    return Row(["predict", str(model), "--input", str(texts_file(tmp))],
               (f"{model / 'tokenizer.json'}: not a valid tokenizer.json",), keep=(model,))


@row("a tokenizer_config.json that is not JSON")
def _(w, tmp, patch):
    model = w.copy(w.encoder, tmp)
    (model / "tokenizer_config.json").write_text("model_max_length: 512", encoding="utf-8")
    return Row(["embed", str(model), "--input", str(texts_file(tmp)), "-o", str(tmp / "v.npy")],
               (f"{model / 'tokenizer_config.json'}: not valid JSON",), keep=(model,))


@row("pretrain --tokenizer with a broken tokenizer.json")
def _(w, tmp, patch):
    model = w.copy(w.encoder, tmp)
    (model / "tokenizer.json").write_text("", encoding="utf-8")
    argv = w.pretrain(tmp / "out")
    argv[argv.index("--tokenizer") + 1] = str(model)
    return Row(argv, (f"{model / 'tokenizer.json'}: not a valid tokenizer.json",), keep=(model,),
               check=lambda: assert_nothing_written_but(tmp, model))


# -- checkpoints whose config and weights disagree inside the encoder -----------------------------------------------
def without_tensor(w: World, tmp: Path, folder: Path, name: str) -> Path:
    model = w.copy(folder, tmp, "model")
    tensors = load_file(str(model / "model.safetensors"))
    del tensors[name]
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    return model


def with_layers(w: World, tmp: Path, folder: Path, layers: int) -> Path:
    model = w.copy(folder, tmp, "model")
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps({**config, "num_hidden_layers": layers}), encoding="utf-8")
    return model


@row("embed: an encoder tensor missing")
def _(w, tmp, patch):
    model = without_tensor(w, tmp, w.encoder, "encoder.layer.1.output.dense.weight")
    return Row(["embed", str(model), "--input", str(texts_file(tmp)), "-o", str(tmp / "v.npy")],
               ("model.safetensors: the weights do not match config.json (num_hidden_layers 2",
                "have no encoder.layer.1.output.dense.weight", "only heads may be newly initialised"), keep=(model,),
               check=lambda: assert_nothing_written_but(tmp, model, tmp / "texts.txt"))


@row("embed: num_hidden_layers above the weights'")
def _(w, tmp, patch):
    model = with_layers(w, tmp, w.encoder, 4)
    return Row(["embed", str(model), "--input", str(texts_file(tmp)), "-o", str(tmp / "v.npy")],
               ("(num_hidden_layers 4; the checkpoint has 2 layers)", "have no encoder.layer.2.*, encoder.layer.3.*"),
               keep=(model,))


@row("predict: num_hidden_layers below the weights'")
def _(w, tmp, patch):
    model = with_layers(w, tmp, w.classifier, 1)
    return Row(["predict", str(model), "--input", str(texts_file(tmp))],
               ("(num_hidden_layers 1; the checkpoint has 2 layers)",
                "have bert.encoder.layer.1.*, which the config has no place for"), keep=(model,))


@row("finetune: an embedding tensor missing")
def _(w, tmp, patch):
    model = without_tensor(w, tmp, w.encoder, "embeddings.token_type_embeddings.weight")
    return Row(w.finetune(tmp / "out", model=model), ("have no embeddings.token_type_embeddings.weight",),
               keep=(model,), check=lambda: assert_nothing_written_but(tmp, model))


@row("pretrain --init-from: a layer norm missing")
def _(w, tmp, patch):
    model = without_tensor(w, tmp, w.encoder, "encoder.layer.0.attention.output.LayerNorm.weight")
    return Row(["pretrain", "--data", str(w.data), "--init-from", str(model), "--output-dir", str(tmp / "out"),
                "--max-steps", "1", "--no-progress"],
               ("have no encoder.layer.0.attention.output.LayerNorm.weight",), keep=(model,))


@row("parity: an encoder tensor missing")
def _(w, tmp, patch):
    model = without_tensor(w, tmp, w.encoder, "encoder.layer.0.intermediate.dense.bias")
    return Row(["parity", str(model)], ("have no encoder.layer.0.intermediate.dense.bias",), keep=(model,))


# -- inference on a model with an untrained part -------------------------------------------------------------------
@row("fill-mask on a checkpoint without an MLM head")
def _(w, tmp, patch):
    return Row(["fill-mask", str(w.encoder), "the film was [MASK] ."], ("has no masked-LM head",))


@row("predict --task classification on a checkpoint without a classifier")
def _(w, tmp, patch):
    return Row(["predict", str(w.encoder), "--task", "classification", "--input", str(texts_file(tmp))],
               ("has no trained classification head (classifier.weight",))


@row("embed --pooling pooler on a checkpoint without a pooler")
def _(w, tmp, patch):
    return Row(["embed", str(w.mlm), "--pooling", "pooler", "--input", str(texts_file(tmp)), "-o",
                str(tmp / "v.npy")], ("embed --pooling pooler needs trained weights", "pooler.dense.weight"),
               check=lambda: assert_nothing_written_but(tmp, tmp / "texts.txt"))


# -- damaged checkpoints -------------------------------------------------------------------------------------------
def damaged_run(w: World, tmp: Path, damage: Callable[[Path], None]) -> Path:
    run = w.copy(w.pretrain_run, tmp, "run")
    damage(run / "checkpoints")
    return run


DAMAGE = {
    "index.json that is not JSON": (lambda c: (c / "index.json").write_text('{"last": "step-0'),
                                    "checkpoints/index.json: damaged (Unterminated string"),
    "index.json that is empty": (lambda c: (c / "index.json").write_text(""), "checkpoints/index.json: damaged (empty)"),
    "index.json naming a missing checkpoint": (lambda c: (c / "index.json").write_text('{"last": "step-000009"}'),
                                               "index.json: names step-000009, which is missing"),
    "index.json of another shape": (lambda c: (c / "index.json").write_text("[1, 2]"),
                                    "checkpoints/index.json: damaged (expected"),
    "trainer.json without its 'state'": (
        lambda c: (c / "step-000002" / "trainer.json").write_text(json.dumps(
            {k: v for k, v in json.loads((c / "step-000002" / "trainer.json").read_text()).items() if k != "state"})),
        "step-000002/trainer.json: missing key 'state'"),
    "trainer.json that is not JSON": (lambda c: (c / "step-000002" / "trainer.json").write_text("{"),
                                      "step-000002/trainer.json: cannot read"),
    "trainer.json with a state of another version": (
        lambda c: (c / "step-000002" / "trainer.json").write_text(json.dumps(
            {**json.loads((c / "step-000002" / "trainer.json").read_text()), "state": {"step": 2, "phase": 1}})),
        "trainer.json: 'state' should hold step, epoch"),
    "training.pt holding an unsafe pickle": (
        lambda c: torch.save({"optimizer": Unsafe()}, c / "step-000002" / "training.pt"),
        "step-000002/training.pt: cannot read (UnpicklingError"),
    "model.safetensors cut short": (
        lambda c: (c / "step-000002" / "model.safetensors").write_bytes(
            (c / "step-000002" / "model.safetensors").read_bytes()[:500]),
        "step-000002/model.safetensors: not a readable safetensors file"),
    "model.safetensors of another model": (
        lambda c: save_file({"weight": torch.zeros(2)}, c / "step-000002" / "model.safetensors"),
        "step-000002/model.safetensors: the weights do not match config.json"),
}


class Unsafe:
    def __reduce__(self):
        return (os.system, ("echo unsafe pickle ran",))


for _name, (_damage, _expected) in DAMAGE.items():
    @row(f"--resume with {_name}")
    def _(w, tmp, patch, damage=_damage, expected=_expected):
        run = damaged_run(w, tmp, damage)
        return Row(w.pretrain_corpus(run, "--resume", "--max-steps", "3"), (expected,), keep=(run,))


# -- one run per folder, and never over an earlier one silently ----------------------------------------------------
@row("pretrain --resume with no checkpoint")
def _(w, tmp, patch):
    return Row(w.pretrain(tmp / "out", "--resume"), (f"--resume: no checkpoint in {tmp / 'out' / 'checkpoints'}",
                                                      "run without --resume"),
               check=lambda: assert_nothing_written(tmp))


@row("finetune --resume with no checkpoint")
def _(w, tmp, patch):
    (tmp / "out").mkdir()
    (tmp / "out" / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    return Row(w.finetune(tmp / "out", "--resume"), ("--resume: no checkpoint in", "--overwrite-output-dir"),
               keep=(tmp / "out",))


@row("pretrain over an earlier run")
def _(w, tmp, patch):
    run = w.copy(w.pretrain_run, tmp, "run")
    return Row(w.pretrain_corpus(run, "--max-steps", "1"),
               (f"{run} holds an earlier run (checkpoints/, metrics.jsonl, final/)", "--resume",
                "--overwrite-output-dir"), keep=(run,))


@row("finetune over an earlier run")
def _(w, tmp, patch):
    run = w.copy(w.finetune_run, tmp, "run")
    return Row(w.finetune(run, "--max-steps", "1"), (f"{run} holds an earlier run", "--overwrite-output-dir"),
               keep=(run,))


@row("finetune --overwrite-output-dir replaces the earlier run")
def _(w, tmp, patch):
    run = w.copy(w.finetune_run, tmp, "run")

    def check():
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == [1], f"metrics.jsonl should hold the new run alone: steps {steps}"
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["index.json", "step-000001"], \
            "the earlier run's checkpoints should be gone"
    return Row(w.finetune(run, "--max-steps", "1", "--overwrite-output-dir", "--validation-fraction", "0.25"), (),
               status=0, lines=0, check=check)


def no_space(after_calls: int, real):
    calls = []

    def failing(obj, path):
        calls.append(path)
        if len(calls) > after_calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(obj, path)
    return failing


@row("--overwrite-output-dir on a full disk keeps the earlier run")
def _(w, tmp, patch):
    from minibert.training import train_state
    run = w.copy(w.pretrain_run, tmp, "run")
    patch.setattr(train_state, "torch_save", no_space(0, train_state.torch_save))
    return Row(w.pretrain_corpus(run, "--max-steps", "2", "--save-every", "1", "--overwrite-output-dir"),
               ("checkpoints/step-000001: cannot write the checkpoint (no space left on device)",
                "its partial files were removed; make room, then run again"), keep=(run,))


@row("a lock left by a killed run")
def _(w, tmp, patch):
    run = w.copy(w.pretrain_run, tmp, "run")
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not process_alive(pid))
    (run / ".minibert.lock").write_text(json.dumps({"host": host_name(), "pid": dead, "command": "minibert pretrain"}))

    def check():
        assert not (run / ".minibert.lock").exists(), "the lock should be released at the end"
    return Row(w.pretrain_corpus(run, "--resume", "--max-steps", "2"),
               (f"{run / '.minibert.lock'}: took over a stale lock (process {dead} on {host_name()}",), status=0,
               check=check)


@row("temporaries left by killed writes")
def _(w, tmp, patch):
    run = w.copy(w.pretrain_run, tmp, "run")
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not process_alive(pid))
    stale = [run / f".metrics.jsonl.tmp-{host_name()}-{dead}-0a1b", run / "final" / f".config.json.tmp-{host_name()}-{dead}-2c3d"]
    for path in stale:
        path.write_text("half")
    (run / "checkpoints" / f".step-000003.tmp-{host_name()}-{dead}-4e5f").mkdir()
    (run / "checkpoints" / f".step-000003.tmp-{host_name()}-{dead}-4e5f" / "model.pt").write_bytes(b"half")

    def check():
        assert not temporaries(run), f"stale temporaries should be removed: {temporaries(run)}"
    return Row(w.pretrain_corpus(run, "--resume", "--max-steps", "2"), (), status=0, lines=0, check=check)


# -- resuming: the same data, and an explicit schedule --------------------------------------------------------------
@row("finetune --resume with every label flipped")
def _(w, tmp, patch):
    run = w.copy(w.finetune_run, tmp, "run")
    flipped = write_csv(tmp / "flipped.csv", [{**r, "label": {"pos": "neg", "neg": "pos"}[r["label"]]}
                                              for r in classification_rows(64)])
    return Row(w.finetune(run, "--resume", "--max-steps", "4", "--validation-fraction", "0.25", train=flipped),
               ("cannot resume, the training data differs from the run's (content hash",
                "--overwrite-output-dir"), keep=(run,))


@row("pretrain --resume on other prepared data")
def _(w, tmp, patch):
    from bad_input_world import quietly
    run = tmp / "run"
    quietly(w.pretrain(run, "--max-steps", "2", "--save-every", "1"))
    other = tmp / "other-data"
    quietly(["prepare-pretraining", str(w.corpus), "--tokenizer", str(w.encoder), "--output", str(other),
             "--max-seq-length", "32", "--dupe-factor", "1", "--eval-fraction", "0.2", "--data-seed", "7"])
    return Row(w.pretrain(run, "--resume", "--max-steps", "4", data=other),
               ("cannot resume, the training data differs from the run's",), keep=(run, other))


@row("pretrain --resume after the corpus changed")
def _(w, tmp, patch):
    run = w.copy(w.pretrain_run, tmp, "run")
    corpus = tmp / "corpus.txt"
    corpus.write_text(w.corpus.read_text().replace("film", "song"), encoding="utf-8")
    return Row(w.pretrain_corpus(run, "--resume", "--max-steps", "4", corpus=corpus),
               (f"{run / 'data'}: the corpus, data options or tokenizer differ", "a resumed run must read the same"),
               keep=(run,))


@row("pretrain --resume with another --batch-size")
def _(w, tmp, patch):
    run = w.copy(w.pretrain_run, tmp, "run")
    return Row(w.pretrain_corpus(run, "--resume", "--max-steps", "4", "--batch-size", "8"),
               ("cannot resume, the data order would differ: examples per step 4 in the checkpoint, 8 now",),
               keep=(run,))


@row("pretrain --resume with another --seed")
def _(w, tmp, patch):
    run = w.copy(w.pretrain_run, tmp, "run")
    return Row(w.pretrain_corpus(run, "--resume", "--max-steps", "4", "--seed", "3"),
               ("data order would differ: --seed 0 in the checkpoint, 3 now",), keep=(run,))


@row("pretrain --resume with another model config")
def _(w, tmp, patch):
    run = w.copy(w.pretrain_run, tmp, "run")
    config = tmp / "config.json"
    config.write_text(json.dumps({**json.loads(w.config.read_text()), "intermediate_size": 48}))
    argv = w.pretrain_corpus(run, "--resume", "--max-steps", "4")
    argv[argv.index("--config") + 1] = str(config)
    return Row(argv, ("cannot resume, the model config differs", "intermediate_size (checkpoint 64, model 48)"),
               keep=(run,))


def logged_lr(run: Path, step: int) -> float:
    return next(json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()
                if json.loads(line)["step"] == step)


@row("--resume with more --max-steps")
def _(w, tmp, patch):
    run = w.copy(w.pretrain_run, tmp, "run")

    def check():  # the schedule now decays to 0 at step 4: step 3 runs at half the peak, not at 0
        assert logged_lr(run, 3) == pytest.approx(0.5e-4), f"step 3 ran at lr {logged_lr(run, 3)}"
    return Row([*w.pretrain_corpus(run, "--resume", "--max-steps", "4"), "--log-every", "1"],
               ("resuming at step 2 with a changed schedule: total steps 2 -> 4 (--max-steps)",
                "learning rate now 5e-05"), status=0, check=check)


class InfGradient(torch.autograd.Function):
    """The identity forward, an infinite gradient backward: a finite loss whose step would ruin the weights."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def failing_task(patch: pytest.MonkeyPatch, at_call: int, how: str) -> None:
    real, calls = PretrainingTask.loss_terms, []

    def loss_terms(self, model, batch):
        calls.append(1)
        terms = real(self, model, batch)
        if len(calls) == at_call:
            total, count = terms["mlm"]
            terms["mlm"] = (InfGradient.apply(total) if how == "gradient" else total * float("nan"), count)
        return terms
    patch.setattr(PretrainingTask, "loss_terms", loss_terms)


@row("an infinite gradient after a checkpoint")
def _(w, tmp, patch):
    run = tmp / "run"
    failing_task(patch, 3, "gradient")

    def check():
        last = json.loads((run / "checkpoints" / "index.json").read_text())["last"]
        assert last == "step-000002" and not (run / "final").exists(), "nothing may be saved after step 2"
        weights = load_file(run / "checkpoints" / last / "model.safetensors")
        assert all(bool(torch.isfinite(t).all()) for t in weights.values()), "the named checkpoint must be good"
    return Row(w.pretrain(run, "--max-steps", "4", "--save-every", "1"),
               ("step 3: the gradient norm is", "stopped before updating the weights",
                f"last good checkpoint: {run / 'checkpoints' / 'step-000002'}", "--resume and a lower --lr"),
               check=check)


@row("a NaN loss before any checkpoint")
def _(w, tmp, patch):
    failing_task(patch, 1, "loss")
    return Row(w.pretrain(tmp / "run", "--max-steps", "2"),
               ("step 1: the loss is nan", "no checkpoint yet (start again with a lower --lr)"))


@row("recovering a diverged run with a lower --lr")
def _(w, tmp, patch):
    run = tmp / "run"
    with patch.context() as diverging:
        failing_task(diverging, 3, "loss")
        assert main(w.pretrain(run, "--max-steps", "4", "--save-every", "1", "--log-every", "1")) == 2

    def check():
        assert logged_lr(run, 3) == pytest.approx(5e-5 * 0.5), f"step 3 ran at lr {logged_lr(run, 3)}"
        assert (run / "final" / "model.safetensors").is_file(), "the recovered run should finish"
    return Row(w.pretrain(run, "--max-steps", "4", "--save-every", "1", "--log-every", "1", "--resume", "--lr",
                          "5e-5"),
               ("resuming at step 2 with a changed schedule: peak learning rate 0.0001 -> 5e-05 (--lr)",),
               status=0, check=check)


# -- full disks ------------------------------------------------------------------------------------------------------
@row("a full disk while writing a checkpoint")
def _(w, tmp, patch):
    from minibert.training import train_state
    run = tmp / "run"
    patch.setattr(train_state, "torch_save", no_space(1, train_state.torch_save))  # the 2nd checkpoint's training.pt

    def check():
        assert not temporaries(run), f"the partial checkpoint should be removed at once: {temporaries(run)}"
        assert json.loads((run / "checkpoints" / "index.json").read_text())["last"] == "step-000001"
        patch.undo()
        assert main(w.pretrain(run, "--max-steps", "3", "--save-every", "1", "--resume")) == 0, "--resume failed"
    return Row(w.pretrain(run, "--max-steps", "3", "--save-every", "1"),
               (f"{run / 'checkpoints' / 'step-000002'}: cannot write the checkpoint (no space left on device)",
                f"the last one ({run / 'checkpoints' / 'step-000001'}) is intact", "rerun with --resume"),
               check=check)


@row("a full disk while writing final/")
def _(w, tmp, patch):
    import minibert.checkpoint
    run = tmp / "run"

    real = minibert.checkpoint.atomic_write_bytes

    def full(path, data):  # only final/ (filled as .final.tmp-..., then renamed): the checkpoints come before it
        if not any(part == "final" or part.startswith(".final.tmp-") for part in Path(path).parts):
            return real(path, data)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    patch.setattr(minibert.checkpoint, "atomic_write_bytes", full)

    def check():
        assert not (run / "final").exists(), "a final/ that could not be written should not be left empty"
        patch.undo()
        assert main(w.pretrain(run, "--max-steps", "1", "--resume")) == 0, "--resume should write final/"
        assert (run / "final" / "model.safetensors").is_file()
    return Row(w.pretrain(run, "--max-steps", "1"),
               (f"{run / 'final' / 'model.safetensors'}: cannot write the model (no space left on device)",),
               check=check)


@row("a full disk while writing predictions")
def _(w, tmp, patch):
    import minibert.plumbing.atomic_files
    (tmp / "out.jsonl").write_text("earlier predictions\n")

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    patch.setattr(minibert.plumbing.atomic_files, "fsync_file", full)
    return Row(["predict", str(w.classifier), "--input", str(texts_file(tmp)), "-o", str(tmp / "out.jsonl")],
               (f"{tmp / 'out.jsonl'}: no space left on device",), keep=(tmp / "out.jsonl",),
               check=lambda: not temporaries(tmp) or pytest.fail(f"temporaries left: {temporaries(tmp)}"))


# -- interrupted or failed commands leave nothing half-made ----------------------------------------------------------
@row("prepare-pretraining interrupted while replacing data")
def _(w, tmp, patch):
    import minibert.pretraining.shards as shards
    data = w.copy(w.data, tmp)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    patch.setattr(shards, "_write_shard", interrupted)
    return Row(["prepare-pretraining", str(w.corpus), "--tokenizer", str(w.encoder), "--output", str(data),
                "--max-seq-length", "32", "--dupe-factor", "2", "--eval-fraction", "0.2"],
               ("minibert prepare-pretraining: interrupted", "left as they were"), status=130, keep=(data,),
               check=lambda: not temporaries(tmp) or pytest.fail(f"temporaries left: {temporaries(tmp)}"))


@row("train-tokenizer on an empty corpus")
def _(w, tmp, patch):
    (tmp / "empty.txt").write_text("")
    return Row(["train-tokenizer", str(tmp / "empty.txt"), "--vocab-size", "60", "--output", str(tmp / "tok")],
               ("empty corpus",), check=lambda: assert_nothing_written_but(tmp, tmp / "empty.txt"))


@row("pretrain --recipe cpu on an empty corpus (the vocabulary is learnt first)")
def _(w, tmp, patch):
    (tmp / "empty.txt").write_text("")
    return Row(["pretrain", "--recipe", "cpu", "--corpus", str(tmp / "empty.txt"), "--output-dir", str(tmp / "run")],
               ("empty corpus",), check=lambda: assert_nothing_written_but(tmp, tmp / "empty.txt"))


@row("an unexpected error")
def _(w, tmp, patch):
    import minibert.inference

    def broken(*args, **kwargs):
        return 1 / 0
    patch.setattr(minibert.inference, "embed", broken)
    return Row(["embed", str(w.encoder), "--input", str(texts_file(tmp)), "-o", str(tmp / "v.npy")],
               ("minibert embed: error: unexpected ZeroDivisionError: division by zero",
                "rerun with `minibert -v embed ...` for the traceback"), status=1)


# == round 3 (issue 19): one section per class of bad input, each a root cause, not one line ======================
MOST_CHARACTERS = 300  # an error line, whatever it quotes, with paths of ordinary length (see short_paths)


def short_paths(line: str, *roots: Path) -> str:
    """`line` as it would read with the test's long temporary folders (/tmp/pytest-of-.../test_row_...) named
    as a user's folder might be (/data): the length a user sees."""
    for root in sorted({str(root) for root in roots}, key=len, reverse=True):
        line = line.replace(root, "/data")
    return line


def with_config_value(w: World, tmp: Path, folder: Path, key: str, json_text: str) -> Path:
    """A copy of `folder` whose config.json holds `key` as `json_text` (JSON, or what Python's json reads:
    Infinity, NaN)."""
    model = w.copy(folder, tmp, "model")
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    config[key] = "@@"
    (model / "config.json").write_text(json.dumps(config).replace('"@@"', json_text), encoding="utf-8")
    return model


def embed_argv(model: Path, tmp: Path, *extra: str) -> list[str]:
    return ["embed", str(model), "--input", str(texts_file(tmp)), "-o", str(tmp / "v.npy"), *extra]


# -- config values: typed, finite, in range, and a model that fits in memory, checked before any tensor exists ------
CONFIG_VALUES = [
    ("layer_norm_eps", "Infinity", "layer_norm_eps must be a number in (0, 1), got inf (not finite)"),
    ("layer_norm_eps", "NaN", "layer_norm_eps must be a number in (0, 1), got nan (not finite)"),
    ("layer_norm_eps", "1e30", "layer_norm_eps must be a number in (0, 1), got 1e+30"),
    ("layer_norm_eps", "1e-300", "layer_norm_eps 1e-300 is 0 in float32"),
    ("layer_norm_eps", '"1e-12"', "layer_norm_eps must be a number in (0, 1), got '1e-12' (text)"),
    ("hidden_dropout_prob", "NaN", "hidden_dropout_prob must be a number in [0, 1), got nan"),
    ("attention_probs_dropout_prob", '"0.1"', "attention_probs_dropout_prob must be a number in [0, 1), got '0.1'"),
    ("classifier_dropout", "-0.5", "classifier_dropout must be a number in [0, 1) or null, got -0.5"),
    ("initializer_range", "-Infinity", "initializer_range must be a number >= 0, got -inf"),
    ("hidden_size", "32.0", "hidden_size must be a positive integer, got 32.0"),
    ("num_labels", '"2"', "num_labels must be a positive integer, got '2' (text)"),
    ("hidden_act", "[]", "hidden_act must be one of gelu"),
    ("pad_token_id", "-5", "pad_token_id must be a token id in [0, vocab_size 41), got -5"),
    ("pad_token_id", "1000000", "pad_token_id must be a token id in [0, vocab_size 41), got 1000000"),
    ("problem_type", '"weird"', "problem_type must be one of regression"),
    ("id2label", '["neg", "pos"]', "id2label must map class ids to names, got ['neg', 'pos'] (a list)"),
    ("id2label", '{"a": "x"}', "id2label has the key 'a'; class ids are whole numbers"),
    ("id2label", '{"0": "x", "5": "y"}', "id2label's ids must be 0 to 1, got [0, 5]"),
    ("minibert", '"fast"', "minibert must be an object of minibert's settings, got 'fast'"),
    ("hidden_size", "1000000000", "GiB of memory here; most in the layers (num_hidden_layers 2, hidden_size "
                                  "1000000000, intermediate_size 64)"),
    ("intermediate_size", "1000000000000", "GiB of memory here; most in the layers"),
    ("vocab_size", "10000000000", "most in the word embeddings (vocab_size 10000000000 x hidden_size 32)"),
    ("max_position_embeddings", "1000000000", "most in the position embeddings"),
]
for _key, _value, _expected in CONFIG_VALUES:
    @row(f"config.json {_key} {_value}")
    def _(w, tmp, patch, key=_key, value=_value, expected=_expected):
        model = with_config_value(w, tmp, w.encoder, key, value)
        return Row(embed_argv(model, tmp), (f"{model / 'config.json'}: config: ", expected), keep=(model,),
                   check=lambda: assert_nothing_written_but(tmp, model, tmp / "texts.txt"))


@row("config.json nested 100,000 deep")
def _(w, tmp, patch):
    model = w.copy(w.encoder, tmp, "model")
    (model / "config.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    return Row(embed_argv(model, tmp), (f"{model / 'config.json'}: not a config (JSON nested too deeply)",))


@row("pretrain --config with initializer_range NaN")
def _(w, tmp, patch):
    config = tmp / "config.json"
    config.write_text(w.config.read_text().replace("{", '{"initializer_range": NaN, ', 1), encoding="utf-8")
    argv = w.pretrain(tmp / "out")
    argv[argv.index("--config") + 1] = str(config)
    return Row(argv, (f"{config}: config: initializer_range must be a number >= 0, got nan",),
               check=lambda: assert_nothing_written_but(tmp, config))


# -- a checkpoint's head must fit the task asked of it ------------------------------------------------------------
for _task in ("ner", "regression", "qa"):
    @row(f"predict a classifier --task {_task}")
    def _(w, tmp, patch, task=_task):
        return Row(["predict", str(w.classifier), "--input", str(texts_file(tmp)), "--task", task],
                   (f"{w.classifier}: its head was fine-tuned for classification (label_map.json), not {task}",
                    "leave out --task"))


@row("predict a classifier that config.json calls a tagger (labels that are no tags)")
def _(w, tmp, patch):
    model = with_config_value(w, tmp, w.classifier, "architectures", '["BertForTokenClassification"]')
    (model / "label_map.json").unlink()
    return Row(["predict", str(model), "--input", str(texts_file(tmp))],
               (f"{model}: its labels (neg, pos) are not NER tags (O, B-TYPE, I-TYPE)",), keep=(model,))


def with_label_map(w: World, tmp: Path, **changes) -> Path:
    model = w.copy(w.classifier, tmp, "model")
    label_map = json.loads((model / "label_map.json").read_text(encoding="utf-8"))
    (model / "label_map.json").write_text(json.dumps({**label_map, **changes}), encoding="utf-8")
    return model


for _changes, _expected in (({"labels": ["a", "b", "c"]}, "3 label names (a, b, c) for a head of 2 outputs"),
                            ({"labels": "ab"}, "label_map.json: 'labels' should list the label names in id order"),
                            ({"task": 5}, "label_map.json: 'task' is 5, not one of classification"),
                            ({"max_length": 10**12}, "label_map.json: max_length 1000000000000 is more than the "
                                                     "model reads (128 tokens)"),
                            ({"max_length": 2}, "label_map.json: max_length 2 leaves no room for text")):
    @row(f"predict with label_map.json {_changes}")
    def _(w, tmp, patch, changes=_changes, expected=_expected):
        model = with_label_map(w, tmp, **changes)
        return Row(["predict", str(model), "--input", str(texts_file(tmp))], (expected,), keep=(model,))


@row("finetune a classifier for ner (the heads share their tensors)")
def _(w, tmp, patch):
    data = tmp / "ner.conll"
    data.write_text("alice\tB-PER\nwas\tO\n\nbob\tB-PER\nis\tO\n\n" * 8, encoding="utf-8")
    return Row(w.finetune(tmp / "out", model=w.classifier, task="ner", train=data),
               (f"{w.classifier}: its head was fine-tuned for classification (label_map.json), not ner",),
               check=lambda: assert_nothing_written_but(tmp, data))


@row("export --class BertForQuestionAnswering of a classifier")
def _(w, tmp, patch):
    return Row(["export", "onnx", str(w.classifier), str(tmp / "m.onnx"), "--class", "BertForQuestionAnswering"],
               ("export as BertForQuestionAnswering needs trained weights", "qa_outputs"),
               check=lambda: assert_nothing_written(tmp))


# -- lengths must hold a token of text; [MASK] must lie within the model's length ----------------------------------
for _length in ("1", "2"):
    @row(f"embed --max-length {_length}")
    def _(w, tmp, patch, length=_length):
        return Row(embed_argv(w.encoder, tmp, "--max-length", length),
                   (f"--max-length {length} leaves no room for text: [CLS] and [SEP] take 2 tokens; give at least 3",),
                   check=lambda: assert_nothing_written_but(tmp, tmp / "texts.txt"))


@row("finetune --max-length 2")
def _(w, tmp, patch):
    return Row(w.finetune(tmp / "out", "--max-length", "2"), ("--max-length 2 leaves no room for text",),
               check=lambda: assert_nothing_written(tmp))


@row("finetune sentence pairs --max-length 4")
def _(w, tmp, patch):
    rows = [{"text": r["text"], "pair": r["text"], "label": r["label"]} for r in classification_rows(40)]
    data = write_csv(tmp / "pairs.csv", rows)
    return Row(w.finetune(tmp / "out", "--max-length", "4", "--pair-column", "pair", train=data),
               ("--max-length 4 leaves no room for text: [CLS] and two [SEP] take 3 tokens, and each text needs one; "
                "give at least 5",))


@row("embed --max-length beyond the model's positions")
def _(w, tmp, patch):
    return Row(embed_argv(w.encoder, tmp, "--max-length", "100000"),
               ("--max-length 100000 is more than this model reads: 128 tokens (max_position_embeddings 128",))


@row("fill-mask with [MASK] past the model's length in a 100,000-character text")
def _(w, tmp, patch):
    return Row(["fill-mask", str(w.mlm), "the " * 25_000 + "[MASK] ."],
               ("the text is 25,004 tokens, more than the 128 this model reads; its [MASK] at token 25,002 would be "
                "cut off; shorten it",))


@row("fill-mask without [MASK] in a 100,000-character text")
def _(w, tmp, patch):
    return Row(["fill-mask", str(w.mlm), "the " * 25_000], ("no [MASK] token in 'the the the", "(100,000 characters)"))


# -- outputs that would destroy inputs, or a model or tokenizer folder ------------------------------------------
@row("predict -o the --input file")
def _(w, tmp, patch):
    data = texts_file(tmp)
    return Row(["predict", str(w.classifier), "-i", str(data), "-o", str(tmp / "." / "texts.txt")],
               (f"--output {tmp / '.' / 'texts.txt'} is the input {data}",), keep=(data,))


@row("embed -o a hard link to the --input file")
def _(w, tmp, patch):
    data = tmp / "texts.jsonl"
    os.link(texts_file(tmp), data)
    return Row(["embed", str(w.encoder), "-i", str(tmp / "texts.txt"), "-o", str(data)], ("is the input",),
               keep=(data,))


@row("predict -o a file of the model")
def _(w, tmp, patch):
    model = w.copy(w.classifier, tmp, "model")
    return Row(["predict", str(model), "-i", str(texts_file(tmp)), "-o", str(model / "config.json")],
               (f"--output {model / 'config.json'} would replace a file of the input {model}",), keep=(model,))


@row("explain --html over another model's config.json")
def _(w, tmp, patch):
    other = w.copy(w.encoder, tmp, "other")
    return Row(["explain", str(w.mlm), "the [MASK] .", "--html", str(other / "config.json")],
               (f"--html {other / 'config.json'} is a file of the model or tokenizer in {other}",), keep=(other,))


@row("export onnx over the model's weights")
def _(w, tmp, patch):
    model = w.copy(w.encoder, tmp, "model")
    return Row(["export", "onnx", str(model), str(model / "model.safetensors")],
               (f"output {model / 'model.safetensors'} would replace a file of the input {model}",), keep=(model,))


@row("export onnx --fused naming the output")
def _(w, tmp, patch):
    return Row(["export", "onnx", str(w.encoder), str(tmp / "m.onnx"), "--fused", str(tmp / "m.onnx")],
               (f"--fused {tmp / 'm.onnx'} is the output file too",), check=lambda: assert_nothing_written(tmp))


@row("train-tokenizer --output a model folder")
def _(w, tmp, patch):
    model = w.copy(w.encoder, tmp, "model")
    return Row(["train-tokenizer", str(w.corpus), "--vocab-size", "60", "--output", str(model)],
               (f"--output {model} is a model or tokenizer folder (it holds config.json, model.safetensors, "
                "tokenizer.json, tokenizer_config.json, vocab.txt); give another folder, or --overwrite",),
               keep=(model,))


@row("train-tokenizer twice into one folder")
def _(w, tmp, patch):
    assert main(["train-tokenizer", str(w.corpus), "--vocab-size", "60", "--output", str(tmp / "tok")]) == 0
    return Row(["train-tokenizer", str(w.corpus), "--vocab-size", "50", "--output", str(tmp / "tok")],
               ("is a model or tokenizer folder", "--overwrite"), keep=(tmp / "tok",))


@row("train-tokenizer --overwrite into a tokenizer folder")
def _(w, tmp, patch):
    assert main(["train-tokenizer", str(w.corpus), "--vocab-size", "60", "--output", str(tmp / "tok")]) == 0
    before = (tmp / "tok" / "vocab.txt").read_text()

    def check():
        assert (tmp / "tok" / "vocab.txt").read_text() != before, "--overwrite should have replaced the vocabulary"
    return Row(["train-tokenizer", str(w.corpus), "--vocab-size", "50", "--output", str(tmp / "tok"), "--overwrite"],
               (), status=0, lines=0, check=check)


@row("train-tokenizer --output the folder of a corpus file named vocab.txt")
def _(w, tmp, patch):
    (tmp / "corpus").mkdir()
    corpus = tmp / "corpus" / "vocab.txt"
    shutil.copy(w.corpus, corpus)
    return Row(["train-tokenizer", str(corpus), "--vocab-size", "60", "--output", str(tmp / "corpus")],
               (f"writing vocab.txt there would replace the input {corpus}",), keep=(corpus,))


@row("prepare-pretraining --output the tokenizer's folder")
def _(w, tmp, patch):
    model = w.copy(w.encoder, tmp, "model")
    return Row(["prepare-pretraining", str(w.corpus), "--tokenizer", str(model), "--output", str(model)],
               (f"--output {model} is the input {model}; give another folder",), keep=(model,))


@row("prepare-pretraining --output another model's folder")
def _(w, tmp, patch):
    model = w.copy(w.mlm, tmp, "model")
    return Row(["prepare-pretraining", str(w.corpus), "--tokenizer", str(w.encoder), "--output", str(model)],
               (f"--output {model} is a model or tokenizer folder",), keep=(model,))


@row("finetune --output-dir the checkpoint's folder")
def _(w, tmp, patch):
    model = w.copy(w.encoder, tmp, "model")
    return Row(w.finetune(model, model=model),
               (f"--output-dir {model} is a model or tokenizer folder", "--overwrite-output-dir"), keep=(model,))


@row("finetune --overwrite-output-dir over its own --train file")
def _(w, tmp, patch):
    (tmp / "run").mkdir()
    data = tmp / "run" / "metrics.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in classification_rows(40)), encoding="utf-8")
    return Row(w.finetune(tmp / "run", "--overwrite-output-dir", train=data),
               (f"writing metrics.jsonl there would replace the input {data}",), keep=(data,))


@row("pretrain --output-dir its --data folder")
def _(w, tmp, patch):
    data = w.copy(w.data, tmp)
    return Row(w.pretrain(data, data=data), (f"--output-dir {data} is the input {data}",), keep=(data,))


# -- integer flags within what the libraries take -------------------------------------------------------------
for _command, _flag, _value in (("finetune", "--seed", str(10**20)), ("finetune", "--seed", str(2**63)),
                                ("pretrain", "--seed", str(2**64)), ("finetune", "--split-seed", str(10**20)),
                                ("prepare-pretraining", "--data-seed", str(10**20)),
                                ("finetune", "--max-steps", str(10**20)), ("embed", "--batch-size", str(10**19)),
                                ("fill-mask", "--top-k", str(10**20)), ("train-tokenizer", "--vocab-size", str(10**20))):
    @row(f"flag {_command} {_flag} {_value}")
    def _(w, tmp, patch, command=_command, flag=_flag, value=_value):
        return Row([*COMMANDS[command](w, tmp), flag, value],
                   (f"argument {flag}: must be", "at most 9223372036854775807 (2**63-1)", value),
                   check=lambda: assert_nothing_written_but(tmp, tmp / "texts.txt"))


@row("--threads far beyond the cores")
def _(w, tmp, patch):
    return Row([*COMMANDS["embed"](w, tmp), "--threads", "99999"], ("argument --threads: at most", "per core"),
               check=lambda: assert_nothing_written_but(tmp, tmp / "texts.txt"))


@row("finetune --seed 2**63-1 (the largest) runs")
def _(w, tmp, patch):
    return Row(w.finetune(tmp / "out", "--seed", str(2**63 - 1), "--max-steps", "1"), (), status=0, lines=0,
               check=lambda: (tmp / "out" / "final" / "model.safetensors").is_file() or pytest.fail("no final/"))


# -- reader errors: file:line, one short line ---------------------------------------------------------------------
def csv_with(tmp: Path, bad_line: str, name: str = "d.csv") -> Path:
    """A 41-row sentiment CSV with `bad_line` as line 22 (the header is line 1)."""
    rows = classification_rows(40)
    lines = ["text,label", *(f"{r['text']},{r['label']}" for r in rows[:20]), bad_line,
             *(f"{r['text']},{r['label']}" for r in rows[20:])]
    (tmp / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp / name


@row("a CSV field of 200,000 characters is data, not an error")
def _(w, tmp, patch):
    data = csv_with(tmp, '"' + "good " * 40_000 + '",pos')
    return Row(w.finetune(tmp / "out", train=data), (), status=0, lines=0,
               check=lambda: (tmp / "out" / "final").is_dir() or pytest.fail("the run should have finished"))


@row("a CSV without the text column, in 5,000 columns")
def _(w, tmp, patch):
    data = tmp / "wide.csv"
    data.write_text(",".join(f"column_{i}" for i in range(5000)) + "\n" + ",".join("x" * 5000) + "\n")
    return Row(w.finetune(tmp / "out", train=data), (f"{data}:2: no column 'text' (columns: column_0, column_1",
                                                     "characters)"))


@row("a CoNLL line with a third column")
def _(w, tmp, patch):
    data = tmp / "ner.conll"
    data.write_text("alice\tB-PER\nwas\tO\n\nbob\tB-PER\tEXTRA\n", encoding="utf-8")
    return Row(w.finetune(tmp / "out", task="ner", train=data),
               (f"{data}:4: tag 'EXTRA' (the last column) is not O, B-TYPE or I-TYPE",))


@row("a CoNLL token of 100,000 characters without a tag")
def _(w, tmp, patch):
    data = tmp / "ner.conll"
    data.write_text("alice\tB-PER\n\n" + "b" * 100_000 + "\n", encoding="utf-8")
    return Row(w.finetune(tmp / "out", task="ner", train=data),
               (f"{data}:3: expected a token and a tag, got 'bbbb", "(100,000 characters)"))


@row("a JSON-lines training line nested 100,000 deep")
def _(w, tmp, patch):
    data = tmp / "d.jsonl"
    data.write_text('{"text": "a good film", "label": "pos"}\n' * 5 + '{"text": ' + "[" * 100_000 + "]" * 100_000
                    + "}\n", encoding="utf-8")
    return Row(w.finetune(tmp / "out", train=data), (f"{data}:6: bad JSON (nested too deeply)",))


@row("a SQuAD answer of 100,000 characters not in its context")
def _(w, tmp, patch):
    squad = squad_json(4)
    squad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["text"] = "z" * 100_000
    (tmp / "squad.json").write_text(json.dumps(squad), encoding="utf-8")
    return Row(w.finetune(tmp / "out", task="qa", train=tmp / "squad.json"),
               ("question q0: answer 'zzzz", "(100,000 characters) does not occur in its context"))


@row("predict input: a record without its text after a blank line")
def _(w, tmp, patch):
    data = tmp / "in.txt"
    data.write_text('the film\n\n{"sentence": "the plot"}\n', encoding="utf-8")
    return Row(["predict", str(w.classifier), "-i", str(data)], (f"{data}:3: no 'text' field",))


@row("predict input: a record nested 100,000 deep")
def _(w, tmp, patch):
    data = tmp / "in.txt"
    data.write_text("the film\n" + '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    return Row(["predict", str(w.classifier), "-i", str(data)], (f"{data}:2: bad JSON (nested too deeply)",))


@row("1,350 labels and a validation label not among them")
def _(w, tmp, patch):
    data = tmp / "d.csv"
    data.write_text("text,label\n" + "".join(f"film {i},label_number_{i}\n" for i in range(1350)), encoding="utf-8")
    (tmp / "v.csv").write_text("text,label\nfilm,unseen\n", encoding="utf-8")
    return Row(w.finetune(tmp / "out", "--validation", str(tmp / "v.csv"), train=data),
               (f"{tmp / 'v.csv'}:2: label 'unseen' is not among the training labels (label_number_0, ",
                "characters)"))


# -- text that matplotlib would read as markup ---------------------------------------------------------------------
def with_whole_token(w: World, tmp: Path, token: str) -> Path:
    """The MLM with `token` as one vocabulary entry, reached whole (a tokenizer that splits on spaces only)."""
    model = w.copy(w.mlm, tmp, "model")
    tokenizer = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tokenizer["model"]["vocab"]
    vocab[token] = vocab.pop(max(vocab, key=vocab.get))
    tokenizer["pre_tokenizer"] = {"type": "WhitespaceSplit"}
    (model / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    return model


for _token in ("$\\foo{$", "$x^$", "$$"):
    @row(f"explain --png with the vocabulary token {_token}")
    def _(w, tmp, patch, token=_token):
        model = with_whole_token(w, tmp, token)

        def check():
            assert sorted(p.name for p in (tmp / "png").iterdir()) == ["layer_01.png", "layer_02.png"]
        return Row(["explain", str(model), f"the {token} [MASK] .", "--png", str(tmp / "png")], (), status=0,
                   lines=0, check=check)


# -- label spellings of one class, and labels that look like scores ------------------------------------------------
def labelled_csv(tmp: Path, labels: tuple[str, ...]) -> Path:
    rows = [{"text": r["text"], "label": labels[i % len(labels)]} for i, r in enumerate(classification_rows(40))]
    return write_csv(tmp / "d.csv", rows)


for _labels, _expected in ((("1", "1.0"), "label '1.0' and label '1' (at {data}:2) name one class in two spellings"),
                           (("1", "01"), "label '01' and label '1'"), (("pos", " pos"), "label ' pos' and label 'pos'"),
                           (("pos", "Pos"), "label 'Pos' and label 'pos'")):
    @row(f"classification labels {' and '.join(map(repr, _labels))}")
    def _(w, tmp, patch, labels=_labels, expected=_expected):
        data = labelled_csv(tmp, labels)
        return Row(w.finetune(tmp / "out", train=data), (f"{data}:3: " + expected.format(data=data),),
                   check=lambda: assert_nothing_written_but(tmp, data))


@row("JSON labels 1 and 1.0")
def _(w, tmp, patch):
    data = tmp / "d.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"], "label": [1, 1.0][i % 2]}) + "\n"
                            for i, r in enumerate(classification_rows(40))), encoding="utf-8")
    return Row(w.finetune(tmp / "out", train=data), (f"{data}:2: label '1.0' and label '1'",))


@row("classification labels that look like scores")
def _(w, tmp, patch):
    data = labelled_csv(tmp, ("0.5", "1.5"))
    return Row(w.finetune(tmp / "out", "--max-steps", "1", train=data),
               (f"{data}: the labels look like scores (0.5, 1.5); classification takes each as a class name (2 "
                "classes); for scores, use the regression task",), status=0)


# -- output folders are not written through symbolic links ---------------------------------------------------------
def planted_link(w: World, tmp: Path, name: str) -> Path:
    """A finished fine-tuning run whose `name` is a link to tmp/elsewhere (an empty folder, or a user's file)."""
    run = w.copy(w.finetune_run, tmp, "run")
    if (run / name).is_dir():
        shutil.rmtree(run / name)
        (tmp / "elsewhere").mkdir()
    else:
        (run / name).unlink(missing_ok=True)
        (tmp / "elsewhere").write_text("the user's file\n")
    os.symlink(tmp / "elsewhere", run / name)
    return run


for _name in ("final", "checkpoints", "metrics.jsonl", "best"):
    @row(f"finetune --overwrite-output-dir with {_name} a link elsewhere")
    def _(w, tmp, patch, name=_name):
        if name == "best":
            run = w.copy(w.finetune_run, tmp, "run")
            (tmp / "elsewhere").mkdir()
            os.symlink(tmp / "elsewhere", run / "best")
        else:
            run = planted_link(w, tmp, name)
        return Row(w.finetune(run, "--overwrite-output-dir"),
                   (f"{run / name} is a symbolic link (to {tmp / 'elsewhere'}); minibert does not write through "
                    "links in an output folder",), keep=(tmp / "elsewhere",))


@row("a lock file that links to a user's file")
def _(w, tmp, patch):
    (tmp / "out").mkdir()
    (tmp / "precious.txt").write_text("the user's file\n")
    os.symlink(tmp / "precious.txt", tmp / "out" / ".minibert.lock")
    return Row(w.finetune(tmp / "out"), (f"{tmp / 'out' / '.minibert.lock'} is a symbolic link",),
               keep=(tmp / "precious.txt",))


@row("a lock file that is a hard link to a user's file")
def _(w, tmp, patch):
    (tmp / "out").mkdir()
    (tmp / "precious.txt").write_text("the user's file\n")
    os.link(tmp / "precious.txt", tmp / "out" / ".minibert.lock")
    return Row(w.finetune(tmp / "out"), ("is not minibert's lock file (it is a file with other names (a hard link))",),
               keep=(tmp / "precious.txt",))


@row("prepare-pretraining with train/ a link elsewhere")
def _(w, tmp, patch):
    (tmp / "data").mkdir()
    (tmp / "elsewhere").mkdir()
    (tmp / "elsewhere" / "shard_00000").mkdir()
    os.symlink(tmp / "elsewhere", tmp / "data" / "train")
    return Row(COMMANDS["prepare-pretraining"](w, tmp), (f"{tmp / 'data' / 'train'} is a symbolic link",),
               keep=(tmp / "elsewhere",))


@row("pretrain --recipe cpu with tokenizer/ a link elsewhere")
def _(w, tmp, patch):
    (tmp / "out").mkdir()
    (tmp / "elsewhere").mkdir()
    os.symlink(tmp / "elsewhere", tmp / "out" / "tokenizer")
    return Row(["pretrain", "--recipe", "cpu", "--corpus", str(w.corpus), "--output-dir", str(tmp / "out")],
               (f"{tmp / 'out' / 'tokenizer'} is a symbolic link",), keep=(tmp / "elsewhere",))



@pytest.mark.parametrize("name", sorted(ROWS))
def test_row(name, world, tmp_path, monkeypatch, capsys):
    case = ROWS[name](world, tmp_path, monkeypatch)
    capsys.readouterr()  # what setting the row up printed
    before = fingerprint([world.root, *case.keep])
    status = main(case.argv)
    err = capsys.readouterr().err
    assert status == case.status, f"exit status {status}, expected {case.status}; stderr:\n{err}"
    assert "Traceback" not in err, f"a traceback reached the user:\n{err}"
    lines = stderr_lines(status, err)
    assert len(lines) == case.lines, f"expected {case.lines} line(s) on stderr, got:\n{err}"
    too_long = [line for line in lines if len(short_paths(line, tmp_path, world.root)) > MOST_CHARACTERS]
    assert not too_long, f"lines over {MOST_CHARACTERS} characters (with short paths): {too_long}"
    for expected in case.expect:
        assert expected in lines[0], f"the line should name {expected!r}: {lines[0]!r}"
    assert not changed(before, fingerprint([world.root, *case.keep])), \
        f"earlier outputs changed: {changed(before, fingerprint([world.root, *case.keep]))}"
    if case.check is not None:
        case.check()


def test_the_table_is_long_enough():
    assert len(ROWS) >= 80, f"the acceptance asks for at least 80 rows, the table has {len(ROWS)}"


# -- beside the table: help, progress lines, file modes, -v ----------------------------------------------------------
def test_verbose_prints_the_traceback_of_an_unexpected_error(world, tmp_path, monkeypatch, capsys):
    import minibert.inference
    monkeypatch.setattr(minibert.inference, "embed", lambda *args, **kwargs: 1 / 0)
    status = main(["-v", "embed", str(world.encoder), "--input", str(texts_file(tmp_path)), "-o",
                   str(tmp_path / "v.npy")])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" in err and "ZeroDivisionError" in err, err


def test_help_shows_every_default():
    import argparse

    from minibert.cli.main import DefaultsHelpFormatter, build_parser
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = []
    for name, command in commands.items():
        formatter = DefaultsHelpFormatter(prog=name)
        in_required_group = {id(a) for g in command._mutually_exclusive_groups if g.required for a in g._group_actions}
        for action in command._actions:
            if (not action.option_strings or action.nargs == 0 or action.required or id(action) in in_required_group
                    or isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS):  # not in --help
                continue
            if "default" not in formatter._get_help_string(action):
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, f"options whose --help does not say their default: {missing}"


def test_no_progress_logs_a_line_every_log_every_steps(world, tmp_path, capsys):
    assert main([*world.pretrain(tmp_path / "run", "--max-steps", "4"), "--log-every", "2"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"], f"expected lines at steps 2 and 4: {lines}"


def test_written_files_keep_the_umask_mode(world, tmp_path):
    old = os.umask(0o022)
    try:
        assert main(world.pretrain(tmp_path / "run", "--max-steps", "1")) == 0
        assert main(["embed", str(world.encoder), "--input", str(texts_file(tmp_path)), "-o",
                     str(tmp_path / "v.npy")]) == 0
    finally:
        os.umask(old)
    run = tmp_path / "run"
    files = [run / "metrics.jsonl", run / "checkpoints" / "index.json", run / "final" / "model.safetensors",
             run / "final" / "tokenizer.json", tmp_path / "v.npy", *(run / "checkpoints").glob("step-*/*")]
    modes = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, f"files should be 0644 under umask 022: {modes}"
    folder = next((run / "checkpoints").glob("step-*"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755, f"{folder} has mode {oct(folder.stat().st_mode)}"


# -- faults that need a real process ---------------------------------------------------------------------------------
def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, f"expected one line on stderr:\n{err}"
    return lines[0]


def test_two_runs_on_one_output_dir(world, tmp_path, capsys):
    """A real pretrain holds the folder; a second is refused naming it, then takes over once it was killed."""
    run = tmp_path / "run"
    first = minibert_process(*world.pretrain(run, "--max-steps", "100000"))
    lock = run / ".minibert.lock"
    wait_for(lambda: lock.is_file() and str(first.pid) in lock.read_text(), first, what="the first run's lock")
    status = main(world.pretrain(run, "--max-steps", "1", "--overwrite-output-dir"))
    line = one_line(capsys.readouterr().err)
    assert status == 2 and f"{run}: another run is writing here (process {first.pid} on {host_name()}" in line, line
    assert "pretrain" in line and str(lock) in line, f"the line should say what holds it: {line}"
    status = main(world.finetune(run, "--max-steps", "1", "--overwrite-output-dir"))
    line = one_line(capsys.readouterr().err)
    assert status == 2 and f"another run is writing here (process {first.pid}" in line, f"finetune too: {line}"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    before = fingerprint([world.root])
    status = main(world.pretrain(run, "--max-steps", "1", "--overwrite-output-dir"))
    line = one_line(capsys.readouterr().err)
    assert status == 0 and f"took over a stale lock (process {first.pid}" in line, line
    steps = [json.loads(record)["step"] for record in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1], f"metrics.jsonl should be the second run's alone: {steps}"
    assert not changed(before, fingerprint([world.root]))


def slow_prepare(world: World, data: Path, tmp: Path) -> subprocess.Popen:
    corpus = tmp / "big.txt"
    corpus.write_text(world.corpus.read_text() * 20, encoding="utf-8")
    return minibert_process("prepare-pretraining", str(corpus), "--tokenizer", str(world.encoder), "--output",
                            str(data), "--max-seq-length", "32", "--dupe-factor", "80", "--eval-fraction", "0.2")


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_prepare_interrupted_while_replacing_data(how, world, tmp_path, capsys):
    """The earlier data stays whole and usable; SIGINT cleans up at once, SIGKILL on the next run."""
    data = world.copy(world.data, tmp_path)
    before = fingerprint([data])
    process = slow_prepare(world, data, tmp_path)
    wait_for(lambda: bool(temporaries(data)), process, what="the new data's temporary folder")
    process.send_signal(getattr(signal, how))
    _, err = process.communicate(timeout=60)
    if how == "SIGINT":
        assert process.returncode == 130, f"exit status {process.returncode}: {err}"
        assert "minibert prepare-pretraining: interrupted" in one_line(err)
        assert not changed(before, fingerprint([data])), changed(before, fingerprint([data]))
    else:
        left = set(changed(before, fingerprint([data])))
        assert left and all(".tmp-" in name or name.endswith(".minibert.lock") for name in left), \
            f"only a temporary folder and the lock may be left by a kill: {left}"
    assert main(world.pretrain(tmp_path / "run", "--max-steps", "1", data=data)) == 0, "the old data should train"
    if how == "SIGKILL":
        capsys.readouterr()
        assert main(["prepare-pretraining", str(world.corpus), "--tokenizer", str(world.encoder), "--output",
                     str(data), "--max-seq-length", "32", "--dupe-factor", "1", "--eval-fraction", "0.2"]) == 0
        line = one_line(capsys.readouterr().err)
        assert "took over a stale lock" in line and not temporaries(data), (line, temporaries(data))


def can_mount_tmpfs(folder: Path) -> bool:
    """Whether this machine lets an unprivileged process mount a tmpfs in a mount namespace of its own."""
    if shutil.which("unshare") is None:
        return False
    folder.mkdir()
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           f"mount -t tmpfs -o size=64k tmpfs {folder}"], capture_output=True)
    return done.returncode == 0


def test_a_full_filesystem(world, tmp_path, monkeypatch, capsys):
    """On a tmpfs with room for one checkpoint but not two (mounted in a private mount namespace where the test
    may), or else with ENOSPC injected at the same write: one line naming the checkpoint, its temporary removed,
    the earlier checkpoint intact, and `--resume` finishing the run once there is room."""
    checkpoint_size = sum(p.stat().st_size for p in (world.pretrain_run / "checkpoints" / "step-000002").iterdir())
    argv = world.pretrain(Path("RUN"), "--max-steps", "3", "--save-every", "1")
    mount = tmp_path / "small"
    if can_mount_tmpfs(mount):
        run = mount / "run"
        argv = [str(run) if a == "RUN" else a for a in argv]
        script = (f"mount -t tmpfs -o size={int(checkpoint_size * 1.6) // 1024}k tmpfs {mount} && "
                  f"{sys.executable} -m minibert {shlex.join(argv)} 2> {tmp_path / 'err1'}; "
                  f"echo $? > {tmp_path / 'status1'}; "
                  f"ls -A {run / 'checkpoints'} > {tmp_path / 'listing'}; "
                  f"cat {run / 'checkpoints' / 'index.json'} > {tmp_path / 'index'}; "
                  f"mount -o remount,size=64m {mount} && "
                  f"{sys.executable} -m minibert {shlex.join(argv)} --resume 2> {tmp_path / 'err2'}; "
                  f"echo $? > {tmp_path / 'status2'}")
        subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
        status, err = int((tmp_path / "status1").read_text()), (tmp_path / "err1").read_text()
        listing = (tmp_path / "listing").read_text().split()
        index = json.loads((tmp_path / "index").read_text())
        resumed = int((tmp_path / "status2").read_text()), (tmp_path / "err2").read_text()
        assert not (mount / "run").exists(), "the run should have been on the tmpfs, gone with its namespace"
    else:
        from minibert.training import train_state
        run = tmp_path / "run"
        argv = [str(run) if a == "RUN" else a for a in argv]
        monkeypatch.setattr(train_state, "torch_save", no_space(1, train_state.torch_save))  # 2nd checkpoint
        status, err = main(argv), capsys.readouterr().err
        listing = sorted(p.name for p in (run / "checkpoints").iterdir())
        index = json.loads((run / "checkpoints" / "index.json").read_text())
        monkeypatch.undo()
        resumed = main([*argv, "--resume"]), capsys.readouterr().err
    line = one_line(err)
    assert status == 2, f"exit status {status}: {err}"
    assert f"{run / 'checkpoints' / 'step-000002'}: cannot write the checkpoint (no space left on device)" in line, line
    assert sorted(listing) == ["index.json", "step-000001"], f"the partial checkpoint should be gone: {listing}"
    assert index["last"] == "step-000001", index
    assert resumed[0] == 0, f"--resume after making room failed: {resumed[1]}"


def test_an_empty_corpus_is_one_line_when_the_recipe_learns_a_vocabulary_first(tmp_path):
    """In a real process (pytest would capture a warning in-process): the empty file's warning is held back, as
    data preparation holds it back, since the error says the same."""
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    process = minibert_process("pretrain", "--recipe", "cpu", "--corpus", str(empty), "--output-dir",
                               str(tmp_path / "run"))
    _, err = process.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1 and "empty corpus" in lines[0], (process.returncode, err)


# -- round 3: each class once more in a real process (the CLI's own signal handling, stderr and exit status) -------
# Runs `python -m minibert ARGV` from a small process of its own and writes the child's peak memory to a file. On
# Linux a child's ru_maxrss includes the memory of the process that forked it (the copy it ran before exec), so
# measured straight from pytest (which holds ~2 GB late in the suite) it would say nothing about the command.
MEASURE_PEAK = """
import os, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "minibert", *argv])
_, status, usage = os.wait4(pid, 0)
open(report, "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def run_process(*argv: str, timeout: float = 240) -> tuple[int, str, int]:
    """A `minibert` process run to its end: (exit status, stderr, its peak resident memory in KiB)."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "peak"
        done = subprocess.run([sys.executable, "-c", MEASURE_PEAK, str(report), *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=timeout,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        return done.returncode, done.stderr, int(report.read_text())


def process_cases(w: World, tmp: Path) -> dict[str, tuple[list[str], str, Callable[[], None]]]:
    """One case per class: argv, what the one stderr line must hold, and what must hold afterwards."""
    texts = texts_file(tmp)
    before = texts.read_bytes()
    big = with_config_value(w, tmp, w.encoder, "hidden_size", str(2**20))
    corpus = tmp / "ner.conll"
    corpus.write_text("alice\tB-PER\nwas\tO\n\nbob\tB-PER\tEXTRA\n", encoding="utf-8")
    labels = labelled_csv(tmp, ("1", "1.0"))
    run = planted_link(w, tmp, "final")
    return {
        "config": (embed_argv(big, tmp), "GiB of memory here", lambda: not (tmp / "v.npy").exists() or
                   pytest.fail("no output for a refused config")),
        "task": (["predict", str(w.classifier), "-i", str(texts), "--task", "ner"], "not ner", lambda: None),
        "length": (embed_argv(w.encoder, tmp, "--max-length", "2"), "leaves no room for text", lambda: None),
        "output": (["predict", str(w.classifier), "-i", str(texts), "-o", str(texts)], "is the input",
                   lambda: texts.read_bytes() == before or pytest.fail("predict replaced its input")),
        "integer": (w.finetune(tmp / "out", "--seed", "99999999999999999999"), "at most 9223372036854775807",
                    lambda: None),
        "reader": (w.finetune(tmp / "out", task="ner", train=corpus), f"{corpus}:4: tag 'EXTRA'", lambda: None),
        "truncation": (["fill-mask", str(w.mlm), "the " * 25_000 + "[MASK] ."], "its [MASK] at token 25,002",
                       lambda: None),
        "labels": (w.finetune(tmp / "out", train=labels), "name one class in two spellings", lambda: None),
        "link": (w.finetune(run, "--overwrite-output-dir"), "is a symbolic link",
                 lambda: not any((tmp / "elsewhere").iterdir()) or pytest.fail("written through the link")),
    }


@pytest.mark.parametrize("case", ["config", "task", "length", "output", "integer", "reader", "truncation", "labels",
                                  "link"])
def test_each_class_in_a_real_process(case, world, tmp_path):
    argv, expected, check = process_cases(world, tmp_path)[case]
    status, err, peak_kib = run_process(*argv)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, f"exit {status}, stderr:\n{err}"
    assert expected in lines[0] and len(short_paths(lines[0], tmp_path, world.root)) <= MOST_CHARACTERS, lines[0]
    check()
    if case == "config":  # refused before the weights were allocated: 2**20-wide layers would take 48 GiB
        assert peak_kib < 1_500_000, f"peak memory {peak_kib} KiB: the model was allocated before the check"


def test_explain_png_draws_a_token_matplotlib_would_read_as_math(world, tmp_path):
    model = with_whole_token(world, tmp_path, "$\\foo{$")
    status, err, _ = run_process("explain", str(model), "the $\\foo{$ [MASK] .", "--png", str(tmp_path / "png"))
    assert status == 0 and not err.strip(), f"exit {status}: {err}"
    assert len(list((tmp_path / "png").glob("layer_*.png"))) == 2


# -- SIGTERM, at several moments of a run: one line, temporaries removed, the lock released, exit 143 -------------
HOOKED_RUN = """
import os, sys, time
target, marker, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
target, _, only_when = target.partition("@")  # "module:name@text": only a call with an argument holding text
module_name, path = target.split(":")
import importlib
owner = importlib.import_module(module_name)
*parents, function_name = path.split(".")
for parent in parents:
    owner = getattr(owner, parent)
real = getattr(owner, function_name)

def slowed(*args, **kwargs):
    result = real(*args, **kwargs)
    if only_when not in " ".join(map(str, args)):
        return result
    open(marker, "w").close()  # the moment has come: the test sends SIGTERM now
    time.sleep(120)
    return result
setattr(owner, function_name, slowed)
from minibert.cli.main import main
sys.exit(main(argv))
"""

# moment -> the function ("module:name", "@text": only a call given a path holding text) the run is held in, just
# after it did its work. final/ is filled in a temporary folder (.final.tmp-...) that then takes its place.
MOMENTS = {
    "while writing a checkpoint": "minibert.training.train_state:torch_save",
    "while writing final/": "minibert.checkpoint:write_model_files@/.final.tmp-",
    "while logging metrics": "minibert.training.reporting:MetricsLog.write",
}


def hooked_process(target: str, marker: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOOKED_RUN, target, str(marker), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def assert_terminated_cleanly(process: subprocess.Popen, run: Path) -> None:
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, f"exit status {process.returncode}, expected 143: {err}"
    assert "terminated (SIGTERM); outputs written before are left as they were" in one_line(err), err
    assert not temporaries(run), f"temporaries left: {temporaries(run)}"
    assert not (run / ".minibert.lock").exists(), "the lock should be released"


@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_sigterm_at_a_moment_of_a_run(moment, world, tmp_path, capsys):
    """The run is held just after it wrote a file at `moment`, then terminated; `--resume` (or a new run, before
    any checkpoint) finishes it, and final/ loads."""
    run, marker = tmp_path / "run", tmp_path / "reached"
    target = MOMENTS[moment]
    argv = world.finetune(run, "--max-steps", "3", "--save-every", "1", "--validation-fraction", "0")
    process = hooked_process(target, marker, *argv)
    wait_for(marker.exists, process, timeout=180, what=f"the moment {moment}")
    process.send_signal(signal.SIGTERM)
    assert_terminated_cleanly(process, run)
    resume = ["--resume"] if (run / "checkpoints" / "index.json").is_file() else ["--overwrite-output-dir"]
    assert main([*argv, *resume]) == 0, f"the run should finish after SIGTERM: {capsys.readouterr().err}"
    from minibert.finetuning.predict import Predictor
    assert Predictor.load(run / "final").predict([{"text": "a good film"}])[0]["label"] in ("neg", "pos")


def test_sigterm_during_training_steps(world, tmp_path):
    run = tmp_path / "run"
    process = minibert_process(*world.finetune(run, "--epochs", "100000", "--save-every", "1",
                                               "--validation-fraction", "0"))
    wait_for(lambda: (run / "checkpoints" / "index.json").is_file(), process, timeout=180, what="a checkpoint")
    index = (run / "checkpoints" / "index.json").read_text()
    process.send_signal(signal.SIGTERM)
    assert_terminated_cleanly(process, run)
    last = json.loads((run / "checkpoints" / "index.json").read_text())["last"]
    assert (run / "checkpoints" / last / "model.safetensors").is_file(), \
        f"index.json names a missing checkpoint: {index}"


def test_sigterm_while_preparing_data(world, tmp_path):
    data = world.copy(world.data, tmp_path)
    before = fingerprint([data])
    process = slow_prepare(world, data, tmp_path)
    wait_for(lambda: bool(temporaries(data)), process, what="the new data's temporary folder")
    process.send_signal(signal.SIGTERM)
    assert_terminated_cleanly(process, data)
    assert not changed(before, fingerprint([data])), changed(before, fingerprint([data]))


@pytest.mark.parametrize("command", ["predict", "embed"])
def test_sigterm_while_streaming_leaves_no_output(command, world, tmp_path):
    """Interrupted between chunks, predict and embed leave no output file (nor its temporary); an earlier file of
    that name stays as it was."""
    lines = tmp_path / "many.txt"
    lines.write_text("the film was good\nthe plot was bad\n" * 20_000, encoding="utf-8")
    output = tmp_path / ("out.jsonl" if command == "predict" else "out.npy")
    output.write_text("earlier\n")
    model = world.classifier if command == "predict" else world.encoder
    marker = tmp_path / "reached"
    target = "minibert.finetuning.predict:Predictor.predict" if command == "predict" else "minibert.inference:embed"
    process = hooked_process(target, marker, command, str(model), "-i", str(lines), "-o", str(output))
    wait_for(marker.exists, process, timeout=180, what="the first chunk")
    process.send_signal(signal.SIGTERM)
    assert_terminated_cleanly(process, tmp_path)
    assert output.read_text() == "earlier\n", "the earlier output should be left as it was"
