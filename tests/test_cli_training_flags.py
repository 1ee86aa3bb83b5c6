"""`minibert pretrain` and `minibert finetune` share their training flags (minibert/cli/training_flags.py): the same
spelling, the same TrainingArguments field, older spellings still accepted."""

from __future__ import annotations

import dataclasses

from minibert.cli.main import build_parser
from minibert.cli.training_flags import FLAGS, given_training_arguments
from minibert.training.args import TrainingArguments


def subcommand(name: str):
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices[name]


def training_options(name: str) -> dict[str, tuple[str, ...]]:
    """field -> option strings, for the training flags of a subcommand."""
    return {action.dest: tuple(action.option_strings) for action in subcommand(name)._actions
            if action.dest in FLAGS}


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
