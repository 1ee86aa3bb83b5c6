import pytest
import torch
from synthetic_training import tiny_model

from minibert.training.optim import build_optimizer, linear_warmup_decay


def test_no_weight_decay_on_biases_and_layernorm():
    model = tiny_model()
    optimizer = build_optimizer(model, learning_rate=1e-3, weight_decay=0.01)
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    assert len(decay_of) == len(names), "every trainable parameter should be in exactly one group"
    for name, param in names.items():
        exempt = name.endswith("bias") or "norm" in name.split(".")[-2]
        expected = 0.0 if exempt else 0.01
        assert decay_of[id(param)] == expected, f"{name}: weight decay {decay_of[id(param)]}, expected {expected}"
    assert decay_of[id(names["mlm.bias"])] == 0.0, "the MLM output bias must not decay"
    assert decay_of[id(names["bert.embeddings.word_embeddings.weight"])] == 0.01, "embedding tables decay"


@pytest.mark.parametrize("step, expected", [(0, 0.0), (5, 0.5), (10, 1.0), (55, 0.5), (100, 0.0), (120, 0.0)])
def test_linear_warmup_then_linear_decay(step, expected):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=2e-4)
    scheduler = linear_warmup_decay(optimizer, warmup_steps=10, total_steps=100)
    for _ in range(step):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(2e-4 * expected), \
        f"lr at step {step} is {scheduler.get_last_lr()[0]}, expected {2e-4 * expected} (warm-up 10, total 100)"
