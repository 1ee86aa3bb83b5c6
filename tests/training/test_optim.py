import copy

import pytest
import torch
from synthetic_training import tiny_model

from minibert.training.optim import (BETAS, EPS, build_optimizer, linear_warmup_decay, parameter_groups,
                                    set_schedule)


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


FUSED_ON_CPU = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 4)


def test_the_update_is_fused_where_torch_has_the_kernel_and_is_adamw():
    model = tiny_model()
    reference = copy.deepcopy(model)
    fused = build_optimizer(model, learning_rate=1e-2, weight_decay=0.01)
    assert fused.defaults["fused"] is (True if FUSED_ON_CPU else None), \
        f"torch {torch.__version__} on CPU: fused={fused.defaults['fused']}"
    default = torch.optim.AdamW(parameter_groups(reference, 0.01), lr=1e-2, betas=BETAS, eps=EPS)  # foreach
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(model.parameters(), reference.parameters()):
            p.grad = torch.randn(p.shape, generator=generator)
            q.grad = p.grad.clone()
        fused.step()
        default.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=f"{name}: the fused update is not AdamW's")


def test_a_restored_optimizer_keeps_this_runs_update():
    """A checkpoint's optimizer state carries the update implementation it was saved with (an older run's foreach,
    or a fused one that another torch lacks); the run that resumes uses its own."""
    optimizer = build_optimizer(tiny_model(), learning_rate=1e-3, weight_decay=0.01)
    scheduler = linear_warmup_decay(optimizer, 10, 100)
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        group["fused"], group["foreach"] = None, None  # saved by a run without the fused update
    optimizer.load_state_dict(state)
    set_schedule(optimizer, scheduler, 1e-3, 0.01)
    assert [group["fused"] for group in optimizer.param_groups] == [optimizer.defaults["fused"]] * 2, \
        "the restored groups should take this run's choice of update"
