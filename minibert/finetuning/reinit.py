"""Re-initialising the top encoder layers before fine-tuning (Zhang et al. 2021, "Revisiting Few-sample BERT
Fine-tuning"): the top layers specialise to the pretraining objective, and fresh ones fine-tune better, most of all
with few labels. `finetune(reinit_layers=N)`, `minibert finetune --reinit-layers N`, and every arm of
`minibert compare`."""

from __future__ import annotations

import torch

from minibert.model import BertPreTrainedModel
from minibert.errors import MinibertError, spelled


def check_reinit_layers(count: object, num_layers: int | None = None, model_name: str = "the model") -> None:
    """`count` is an integer >= 0, and at most `num_layers` when that is known: one line naming the flag."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise MinibertError(f"{spelled('reinit_layers')} must be an integer >= 0, got {count!r}")
    if num_layers is not None and count > num_layers:
        raise MinibertError(f"{spelled('reinit_layers')} {count}: {model_name} has only {num_layers} layers")


def reinit_top_layers(model: BertPreTrainedModel, count: int, seed: int) -> None:
    """Re-initialise the top `count` encoder layers with BERT's initialisation (the model's own _init_module),
    drawn from `seed`; torch's global random state is left as it was."""
    layers = model.bert.layers
    check_reinit_layers(count, len(layers))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in layers[len(layers) - count:]:
            for module in layer.modules():
                model._init_module(module)
