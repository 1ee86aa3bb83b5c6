"""`minibert pretrain` and `minibert finetune` share their training flags (minibert/cli/training_flags.py): the same
spelling, the same TrainingArguments field, older spellings and transformers' spellings accepted; a mistyped flag
gets the closest ones suggested; `minibert --version`."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata

import pytest

from minibert.cli.main import build_parser, main
from minibert.cli.training_flags import FLAGS, given_training_arguments
from minibert.training.args import TrainingArguments


def subcommand(name: str):
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices[name]


def training_options(name: str) -> dict[str, tuple[str, ...]]:
    """field -> option strings, for the training flags of a subcommand."""
    return {action.dest: tuple(action.option_strings) for action in subcommand(name)._actions
            if action.dest in FLAGS and action.help != argparse.SUPPRESS}


def test_both_commands_spell_every_shared_flag_alike():
    pretrain, finetune = training_options("pretrain"), training_options("finetune")
    only = set(finetune) ^ set(pretrain)
    assert only == {"early_stopping_patience"}, \
        f"only early stopping (pretraining keeps no best checkpoint) should be one command's own: {only}"
    for field in pretrain:
        assert pretrain[field] == finetune[field], f"{field}: pretrain {pretrain[field]}, finetune {finetune[field]}"


def test_every_flag_sets_a_training_arguments_field():
    fields = {field.name for field in dataclasses.fields(TrainingArguments)}
    assert set(FLAGS) <= fields, f"flags for fields TrainingArguments lacks: {set(FLAGS) - fields}"


def test_old_spelling_and_only_given_flags_pass_on():
    args = build_parser().parse_args(["pretrain", "--corpus", "c.txt", "-o", "out", "--grad-accum", "4",
                                      "--lr", "3e-4", "--resume"])
    assert given_training_arguments(args) == {"grad_accumulation_steps": 4, "learning_rate": 3e-4, "resume": True}, \
        "--grad-accum should still set grad_accumulation_steps, and flags left out should not be passed on"
    args = build_parser().parse_args(["finetune", "m", "--task", "qa", "--train", "t.json", "-o", "out",
                                      "--grad-accumulation", "2", "--early-stopping", "3"])
    assert given_training_arguments(args) == {"grad_accumulation_steps": 2, "early_stopping_patience": 3}


# A command line as transformers' example scripts (run_glue.py, run_mlm.py) spell it.
HF_COMMAND_LINE = ["--output_dir", "out", "--learning_rate", "2e-5", "--per_device_train_batch_size", "8",
                   "--num_train_epochs", "3", "--gradient_accumulation_steps", "2", "--warmup_ratio", "0.1",
                   "--weight_decay", "0.0", "--max_grad_norm", "0.5", "--logging_steps", "5", "--save_steps", "10",
                   "--eval_steps", "10", "--seed", "7", "--dataloader_num_workers", "1", "--overwrite_output_dir",
                   "--bf16"]
HF_FIELDS = {"learning_rate": 2e-5, "per_device_batch_size": 8, "num_epochs": 3, "grad_accumulation_steps": 2,
             "warmup_ratio": 0.1, "weight_decay": 0.0, "max_grad_norm": 0.5, "log_every": 5, "save_every": 10,
             "eval_every": 10, "seed": 7, "num_workers": 1, "overwrite_output_dir": True, "precision": "bf16"}


@pytest.mark.parametrize("command", [["pretrain", "--corpus", "c.txt"], ["finetune", "m", "--task", "qa",
                                                                          "--train", "t.json"]])
def test_transformers_spellings_set_the_same_fields(command):
    args = build_parser().parse_args(command + HF_COMMAND_LINE)
    assert given_training_arguments(args) == HF_FIELDS, "a transformers command line should set the same fields"
    assert args.output_dir == "out", "--output_dir should set the output folder"
    TrainingArguments(args.output_dir, **given_training_arguments(args))  # and they are valid together


def test_every_alias_is_hidden_from_help_but_parsed():
    text = subcommand("finetune").format_help()
    for field, flag in FLAGS.items():
        for alias in flag.hf:
            assert alias not in text, f"{alias} should not clutter --help (it lists {flag.spellings[0]})"
    assert "--max-grad-norm" in text and "--bf16" not in text


def test_max_grad_norm_flag_and_its_range():
    args = build_parser().parse_args(["pretrain", "--corpus", "c", "-o", "o", "--max-grad-norm", "0"])
    assert given_training_arguments(args) == {"max_grad_norm": 0.0}
    assert TrainingArguments("o", max_grad_norm=0.0).max_grad_norm == 0.0, "0 means no clipping, as in transformers"
    with pytest.raises(Exception, match="max_grad_norm"):
        TrainingArguments("o", max_grad_norm=-1.0)


def run_main(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("typed, suggested", [("--learnin-rate", "--learning-rate"), ("--batch_size", "--batch-size"),
                                              ("--max-stpes", "--max-steps"), ("--lerning_rate", "--learning_rate")])
def test_unknown_flag_gets_the_closest_suggested(typed, suggested, capsys):
    code, out, err = run_main(["finetune", "m", "--task", "qa", "--train", "t", "-o", "o", typed, "1"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, f"expected one line, exit 2: {err!r}"
    assert f"unrecognized arguments: {typed} 1" in err
    if suggested:
        assert f"did you mean {suggested}" in err, f"{typed} should suggest {suggested}: {err!r}"


def test_a_far_unknown_flag_suggests_nothing_and_a_command_typo_is_suggested(capsys):
    code, _, err = run_main(["finetune", "m", "--task", "qa", "--train", "t", "-o", "o", "--nosuch"], capsys)
    assert code == 2 and "did you mean" not in err, f"nothing is close to --nosuch: {err!r}"
    code, _, err = run_main(["pretrian", "--corpus", "c"], capsys)
    assert code == 2 and "did you mean pretrain?" in err, err


def test_a_library_error_names_the_flag_as_typed(tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text("text,label\na,x\nb,y\nc,x\nd,y\n", encoding="utf-8")
    for flag in ("--early-stopping", "--early_stopping_patience"):
        code, _, err = run_main(["finetune", str(tmp_path / "no-model"), "--task", "classification", "--train",
                                 str(data), "-o", str(tmp_path / "out"), "--validation-fraction", "0", flag, "2"],
                                capsys)
        assert code == 2 and f"{flag} needs a validation set" in err, f"the error should name {flag}: {err!r}"


def test_version(capsys):
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.startswith(f"minibert {importlib.metadata.version('minibert')} (torch "), out
