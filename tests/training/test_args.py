import pytest

from minibert.training import TrainingArguments, TrainingError


@pytest.mark.parametrize("overrides, message", [
    (dict(precision="fp8"), "precision must be one of"),
    (dict(grad_accumulation_steps=0), "grad_accumulation_steps must be a positive integer"),
    (dict(warmup_steps=10, warmup_ratio=0.1), "not both"),
    (dict(early_stopping_patience=2), "needs keep_best_metric"),
    (dict(max_grad_norm=-1.0), "max_grad_norm must be a number >= 0"),
    (dict(max_grad_norm=float("nan")), "max_grad_norm must be a number >= 0"),
])
def test_bad_arguments_fail_with_the_field_named(overrides, message):
    with pytest.raises(TrainingError, match=message):
        TrainingArguments("out", **overrides)


def test_warmup_ratio_and_best_direction():
    assert TrainingArguments("out", warmup_ratio=0.1).warmup_for(95) == 10, "10% of 95 steps rounds up to 10"
    assert not TrainingArguments("out", keep_best_metric="eval_loss").higher_is_better(), "lower loss is better"
    assert TrainingArguments("out", keep_best_metric="accuracy").higher_is_better(), "higher accuracy is better"
