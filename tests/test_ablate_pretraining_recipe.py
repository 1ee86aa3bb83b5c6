"""The pretraining ablation (scripts/ablate_pretraining_recipe.py) compares configs that each change the `cpu`
recipe in named settings: a misspelt setting would be silently ignored and its row would measure the recipe again.
Also: configs that change no arithmetic get the recipe's cost (and so its number of steps), the others their own;
and every config is judged on the same kind of held-out set."""

from __future__ import annotations

import dataclasses

from minibert.pretraining.examples import PretrainingOptions
from minibert.pretraining.recipes import RECIPES
from script_loading import load_script


def test_every_config_changes_known_settings_of_the_recipe():
    ablation = load_script("ablate_pretraining_recipe")
    for name, changes in ablation.CONFIGS.items():
        unknown = set(changes) - set(ablation.BASE)
        assert not unknown, f"config {name!r} sets {unknown}, which no run reads"
        if name != "cpu recipe":
            assert any(ablation.BASE[key] != value for key, value in changes.items()), \
                f"config {name!r} changes nothing: {changes}"
    assert ablation.CONFIGS["cpu recipe"] == {}, "the first row is the recipe itself"


def test_the_base_is_the_cpu_cloze_recipe():
    ablation = load_script("ablate_pretraining_recipe")
    cpu = RECIPES["cpu-cloze"]  # the recipe the ablation chose, named "cpu" then
    base = ablation.settings("cpu recipe")
    assert base["learning_rate"] == cpu.training["learning_rate"] and base["vocab_size"] == cpu.vocab_size
    assert base["hidden_size"] == cpu.model["hidden_size"] and base["max_seq_length"] == cpu.data["max_seq_length"]
    model = ablation.model_config(base, 100)
    assert (model.hidden_size, model.num_hidden_layers, model.hidden_dropout_prob) == (
        cpu.model["hidden_size"], cpu.model["num_hidden_layers"], cpu.model["hidden_dropout_prob"]), model


def test_costs_are_shared_only_by_configs_with_the_same_arithmetic():
    ablation = load_script("ablate_pretraining_recipe")
    assert ablation.costed_as("BERT init") == "cpu recipe"
    assert ablation.costed_as("lr 2e-3") == "cpu recipe"
    assert ablation.costed_as("one-cycle (triangular)") == "cpu recipe"
    assert ablation.costed_as("width 256") == "width 256"
    assert ablation.costed_as("batch 64, lr 2e-3") == "batch 64, lr 2e-3", "a bigger batch costs more per step"


def test_every_config_is_judged_on_the_same_kind_of_held_out_set():
    ablation = load_script("ablate_pretraining_recipe")
    judged = set()
    for name in ("cpu recipe", "with NSP", "mask 40%", "whole-word masking", "static masking"):
        options = ablation.held_out_options(ablation.data_options(ablation.settings(name)))
        judged.add(dataclasses.astuple(options))
        assert not options.nsp and options.masked_lm_prob == 0.15 and not options.whole_word_mask, (name, options)
    assert len(judged) == 1, f"these configs would be judged on different held-out sets: {judged}"
    assert ablation.data_options(ablation.settings("mask 40%")).max_predictions_per_seq >= round(64 * 0.4), \
        "40% masking needs room for 40% of the tokens"
    assert isinstance(ablation.data_options(ablation.settings("cpu recipe")), PretrainingOptions)
