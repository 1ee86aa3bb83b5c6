"""Re-initialising the top encoder layers before fine-tuning (`finetune(reinit_layers=N)`, `--reinit-layers N`;
Zhang et al. 2021): the top N layers get BERT's initialisation drawn from the seed, the rest keep the checkpoint's
weights, the saved model is a normal checkpoint, and too large an N is one line naming the flag."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from minibert.cli.main import main
from minibert.config import BertConfig
from minibert.finetuning.reinit import reinit_top_layers
from minibert.finetuning.run import finetune
from minibert.model import BertForSequenceClassification

from .test_run import FAST, TINY, classification_rows, make_checkpoint, write_csv


def trained_looking(seed: int = 0) -> BertForSequenceClassification:
    """A model whose every weight is away from BERT's init (as a pretrained one is): LayerNorms included."""
    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(**TINY))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    return model


def berts_init_by_hand(layer: nn.Module, seed: int, std: float) -> dict[str, torch.Tensor]:
    """BERT's initialisation (normal(0, std) weights, zero biases, LayerNorm 1 and 0), written out again."""
    fresh = {}
    torch.manual_seed(seed)
    for name, module in layer.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.Linear):
            fresh[prefix + "weight"] = torch.empty_like(module.weight).normal_(0.0, std)
            fresh[prefix + "bias"] = torch.zeros_like(module.bias)
        elif isinstance(module, nn.LayerNorm):
            fresh[prefix + "weight"] = torch.ones_like(module.weight)
            fresh[prefix + "bias"] = torch.zeros_like(module.bias)
    return fresh


@pytest.mark.parametrize("count", [1, 2])
def test_the_top_layers_get_berts_init_from_the_seed_and_the_rest_is_untouched(count):
    model = trained_looking()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    reinit_top_layers(model, count, seed=5)
    first = len(model.bert.layers) - count
    top = model.bert.layers[first:]  # the top `count` layers, drawn bottom first
    expected = berts_init_by_hand(top, seed=5, std=model.config.initializer_range)
    for name, tensor in top.state_dict().items():
        index, _, rest = name.partition(".")
        full = f"bert.layers.{first + int(index)}.{rest}"
        assert torch.equal(tensor, expected[name]), f"{full} is not BERT's init drawn from seed 5"
        assert not torch.equal(tensor, before[full]), f"{full} kept its weights"
    reinitialised = tuple(f"bert.layers.{i}." for i in range(first, len(model.bert.layers)))
    untouched = [name for name in before if not name.startswith(reinitialised)]
    assert untouched and all(torch.equal(model.state_dict()[name], before[name]) for name in untouched), \
        f"only the top {count} layer(s) should change"
    other_seed = trained_looking()
    reinit_top_layers(other_seed, count, seed=6)
    assert not torch.equal(other_seed.bert.layers[-1].ffn.intermediate.weight, top[-1].ffn.intermediate.weight), \
        "another seed should draw other weights"


def test_zero_layers_changes_nothing():
    model = trained_looking()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    reinit_top_layers(model, 0, seed=5)
    assert all(torch.equal(model.state_dict()[name], before[name]) for name in before), "0 should change nothing"


def test_finetune_reinit_layers_saves_a_normal_checkpoint(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    data = write_csv(tmp_path / "data.csv", classification_rows(64))
    # learning rate 0: the saved weights are those the run started from
    result = finetune(checkpoint, "classification", data, tmp_path / "run", reinit_layers=1, validation_fraction=0,
                      max_steps=1, **{**FAST, "learning_rate": 0.0, "seed": 3})
    saved = BertForSequenceClassification.from_pretrained(result.model_dir)
    assert not saved.load_report.newly_initialised, "the saved model should load whole, as any checkpoint"
    start = BertForSequenceClassification.from_pretrained(checkpoint)
    assert torch.equal(saved.bert.layers[0].ffn.intermediate.weight, start.bert.layers[0].ffn.intermediate.weight), \
        "the lower layer should keep the checkpoint's weights"
    expected = berts_init_by_hand(saved.bert.layers[1], seed=3, std=saved.config.initializer_range)
    assert all(torch.equal(tensor, expected[name]) for name, tensor in saved.bert.layers[1].state_dict().items()), \
        "the top layer should be BERT's init drawn from the run's seed"


def test_too_many_layers_is_one_line(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "ckpt")
    data = write_csv(tmp_path / "data.csv", classification_rows(64))
    status = main(["finetune", str(checkpoint), "--task", "classification", "--train", str(data), "--output-dir",
                   str(tmp_path / "run"), "--reinit-layers", "3", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.splitlines() == [err], f"one line, exit 2: {err}"
    assert "--reinit-layers 3: the model has only 2 layers" in err, err
