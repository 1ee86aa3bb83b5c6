import json
import math

import pytest
import torch
from synthetic_training import VOCAB, SyntheticPretraining, stack, tiny_model

from minibert.errors import CheckpointError
from minibert.plumbing.atomic_files import TEMP_MARK
from minibert.model import BertForMaskedLM, BertForPreTraining, BertForSequenceClassification
from minibert.finetuning.objective import SequenceClassificationTask
from minibert.pretraining.objective import PretrainingTask
from minibert.training import TrainingArguments, TrainingError, train
from minibert.training import train_state
from minibert.training.batches import EpochBatches


def arguments(folder, **overrides):
    settings = dict(learning_rate=1e-3, log_every=1, progress_bar=None, plot=False, per_device_batch_size=4)
    return TrainingArguments(str(folder), **{**settings, **overrides})


def records(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_tiny_model_overfits_a_tiny_corpus(tmp_path):
    corpus = SyntheticPretraining(16, nsp=False)
    model = tiny_model(BertForMaskedLM)
    result = train(model, PretrainingTask(), corpus, corpus,
                   arguments(tmp_path, max_steps=80, per_device_batch_size=16, learning_rate=1e-2, weight_decay=0.0,
                             eval_every=40, plot=True), stack)
    first, last = records(tmp_path)[0], records(tmp_path)[-1]
    assert first["loss"] > 3.0, f"an untrained model should be near ln({VOCAB}) = 4.16, got {first['loss']}"
    assert result.train_loss < 0.5, f"80 steps on 16 sequences should bring the MLM loss below 0.5: {result.train_loss}"
    assert result.final_metrics["mlm_accuracy"] > 0.9, f"the corpus should be memorised: {result.final_metrics}"
    for key in ("step", "epoch", "lr", "loss", "tokens_per_s", "examples_per_s", "eval_mlm_accuracy", "eval_loss"):
        assert key in last, f"metrics.jsonl's last record lacks {key!r}: {last}"
    assert (tmp_path / "curves.png").stat().st_size > 0, "curves.png was not drawn"
    reloaded = BertForMaskedLM.from_pretrained(tmp_path / "final")
    batch = stack([corpus[i] for i in range(4)])
    torch.testing.assert_close(reloaded(**batch).loss, model.eval()(**batch).loss, msg="final/ is not the model")


def test_accumulation_equals_one_big_batch(tmp_path):
    data = SyntheticPretraining(32)
    big_model, small_model = tiny_model(), tiny_model()
    train(big_model, PretrainingTask(), data, None,
          arguments(tmp_path / "big", max_steps=3, per_device_batch_size=8, warmup_steps=1), stack)
    train(small_model, PretrainingTask(), data, None,
          arguments(tmp_path / "small", max_steps=3, per_device_batch_size=2, grad_accumulation_steps=4,
                    warmup_steps=1), stack)
    big, small = records(tmp_path / "big"), records(tmp_path / "small")
    for b, s in zip(big, small):
        assert abs(b["loss"] - s["loss"]) < 1e-6, f"step {b['step']}: loss {s['loss']} with 4x2, {b['loss']} with 8"
        assert abs(b["grad_norm"] - s["grad_norm"]) < 1e-6, f"step {b['step']}: gradient norms differ"
    differences = [(a - b).abs().max().item() for a, b in zip(big_model.parameters(), small_model.parameters())]
    assert max(differences) < 1e-6, f"parameters after 3 steps differ by {max(differences)}"

    # The data can tell exact normalisation from averaging micro-batch means (masked counts differ).
    first_step = [stack([data[i] for i, _ in micro]) for micro in
                  list(EpochBatches(32, 2, 4, rank=0, world_size=1, seed=0, epoch=0))[:4]]
    fresh = tiny_model()
    mean_of_means = sum(fresh(**batch).loss.item() for batch in first_step) / 4
    assert abs(mean_of_means - big[0]["loss"]) > 1e-3, "test data too uniform to catch a mean-of-means bug"


class NanAtStep(PretrainingTask):
    def __init__(self, step: int):
        self.step, self.calls = step, 0

    def loss_terms(self, model, batch):
        self.calls += 1
        terms = super().loss_terms(model, batch)
        if self.calls == self.step:
            terms["mlm"] = (terms["mlm"][0] * math.nan, terms["mlm"][1])
        return terms


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path):
    data = SyntheticPretraining(32)
    model = tiny_model()
    with pytest.raises(TrainingError, match="step 5: the loss is nan") as error:
        train(model, NanAtStep(5), data, None, arguments(tmp_path, max_steps=8, save_every=2), stack)
    assert "step-000004" in str(error.value), f"the error should name the last good checkpoint: {error.value}"
    last = train_state.find(tmp_path)
    assert last is not None and last.name == "step-000004", f"last checkpoint should be step 4, is {last}"
    assert not (tmp_path / "final").exists(), "a failed run must not write final/"
    assert [r["step"] for r in records(tmp_path)] == [1, 2, 3, 4], "metrics.jsonl should stop at step 4"
    # The run stopped before step 5 touched the weights, so the model in memory is the step-4 model.
    kept = BertForPreTraining.from_pretrained(last).state_dict()  # a checkpoint is a model folder
    for name, tensor in model.state_dict().items():
        assert torch.isfinite(kept[name]).all(), f"{name}: the kept checkpoint holds non-finite values"
        assert torch.equal(tensor, kept[name]), f"{name}: checkpoint and model differ after the NaN step"


def test_resume_at_an_epoch_boundary_repeats_the_uninterrupted_run(tmp_path):
    data = SyntheticPretraining(32, dynamic=True)  # 8 steps an epoch
    dropout = dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)  # the RNG state must come back too
    train(tiny_model(**dropout), PretrainingTask(), data, None, arguments(tmp_path / "whole", max_steps=16), stack)
    with pytest.raises(TrainingError, match="step 9"):  # a failed step right after the epoch-end checkpoint
        train(tiny_model(**dropout), NanAtStep(9), data, None,
              arguments(tmp_path / "cut", max_steps=16, save_every=8), stack)
    train(tiny_model(**dropout), PretrainingTask(), data, None,
          arguments(tmp_path / "cut", max_steps=16, save_every=8, resume=True), stack)
    expected, got = records(tmp_path / "whole"), records(tmp_path / "cut")
    assert [r["step"] for r in got] == list(range(1, 17)), "the resumed run should log steps 9-16 after 1-8"
    worst = max(abs(a["loss"] - b["loss"]) for a, b in zip(expected, got))
    assert worst <= 1e-6, f"resumed at the end of epoch 0, the losses differ by up to {worst}"


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    data = SyntheticPretraining(32)
    real_save, calls = train_state.torch_save, []

    def failing_save(obj, path):
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint's training.pt (its model.safetensors is already written)
            raise OSError(28, "No space left on device", str(path))
        real_save(obj, path)

    monkeypatch.setattr(train_state, "torch_save", failing_save)
    with pytest.raises(CheckpointError, match="step-000004: cannot write the checkpoint .no space left on device"):
        train(tiny_model(), PretrainingTask(), data, None, arguments(tmp_path, max_steps=6, save_every=2), stack)
    monkeypatch.setattr(train_state, "torch_save", real_save)
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if TEMP_MARK in p.name]
    assert not leftovers, f"the failed save should remove its temporary folder at once: {leftovers}"
    last = train_state.find(tmp_path)
    assert last is not None and last.name == "step-000002", f"the index should still name step 2, names {last}"
    result = train(tiny_model(), PretrainingTask(), data, None,
                   arguments(tmp_path, max_steps=6, save_every=2, resume=True), stack)
    assert result.steps == 6 and (tmp_path / "final").is_dir(), "resuming from the kept checkpoint should finish"
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if TEMP_MARK in p.name]
    assert not leftovers, f"temporary folders should be cleaned up: {leftovers}"


def test_resume_with_another_model_config_names_the_keys(tmp_path):
    data = SyntheticPretraining(16)
    train(tiny_model(), PretrainingTask(), data, None, arguments(tmp_path, max_steps=2, save_every=2), stack)
    with pytest.raises(CheckpointError) as error:
        train(tiny_model(num_hidden_layers=3, intermediate_size=128), PretrainingTask(), data, None,
              arguments(tmp_path, max_steps=4, resume=True), stack)
    message = str(error.value)
    assert "num_hidden_layers (checkpoint 2, model 3)" in message and "intermediate_size" in message, message
    assert "\n" not in message, f"the error should be one line: {message!r}"


def test_unwritable_output_dir_fails_before_training(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(TrainingError, match="not writable"):
        train(tiny_model(), PretrainingTask(), SyntheticPretraining(8), None,
              arguments(tmp_path / "a-file" / "run", max_steps=1), stack)


def test_bf16_autocast_on_cpu_trains_with_finite_loss(tmp_path):
    result = train(tiny_model(), PretrainingTask(), SyntheticPretraining(16), SyntheticPretraining(4, seed=1),
                   arguments(tmp_path, max_steps=3, precision="bf16"), stack)
    losses = [r["loss"] for r in records(tmp_path)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), f"bf16 losses: {losses}"
    assert math.isfinite(result.final_metrics["loss"]), f"bf16 evaluation: {result.final_metrics}"
    with pytest.raises(TrainingError, match="fp16 needs a CUDA device"):
        train(tiny_model(), PretrainingTask(), SyntheticPretraining(16), None,
              arguments(tmp_path / "fp16", max_steps=1, precision="fp16"), stack)


def test_keeps_the_best_checkpoint_and_stops_early(tmp_path):
    generator = torch.Generator().manual_seed(0)
    examples = [{"input_ids": torch.randint(5, VOCAB, (8,), generator=generator), "labels": torch.tensor(i % 2)}
                for i in range(16)]
    result = train(tiny_model(BertForSequenceClassification), SequenceClassificationTask(), examples, examples,
                   arguments(tmp_path, max_steps=10, learning_rate=0.0, eval_every=1, keep_best_metric="loss",
                             early_stopping_patience=2), stack)
    assert result.stopped_early and result.steps == 3, \
        f"with lr 0 the loss never improves, so patience 2 should stop at step 3 (stopped at {result.steps})"
    assert result.best_step == 1 and "accuracy" in result.final_metrics, result
    assert train_state.find(tmp_path, "best").name == "step-000001", "best/ should be the first evaluation's"
    assert train_state.find(tmp_path, "last").name == "step-000003", "last/ should be where the run stopped"


class EpochRecordingData(SyntheticPretraining):
    """Records the epochs the loop announces, as a dataset with dynamic masking needs them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epochs_seen: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)


def test_loop_announces_each_epoch_to_the_dataset(tmp_path):
    data = EpochRecordingData(8, nsp=False)
    train(tiny_model(BertForMaskedLM), PretrainingTask(), data, None,
          arguments(tmp_path, num_epochs=3, per_device_batch_size=4), stack)
    assert data.epochs_seen == [0, 1, 2], f"set_epoch calls {data.epochs_seen}: dynamic masks would repeat"


def test_a_checkpoint_is_a_model_folder_minibert_and_transformers_load(tmp_path):
    """checkpoints/step-N/ holds model.safetensors + config.json as save_pretrained writes them: minibert and
    transformers load it as a model, with the weights the run had at that step."""
    import transformers
    model = tiny_model()
    train(model, PretrainingTask(), SyntheticPretraining(32), None, arguments(tmp_path, max_steps=4, save_every=2),
          stack)
    last = train_state.find(tmp_path)
    assert sorted(p.name for p in last.iterdir()) == ["config.json", "model.safetensors", "trainer.json",
                                                      "training.pt"], f"checkpoint files: {list(last.iterdir())}"
    ours = BertForPreTraining.from_pretrained(last)
    assert not ours.load_report.newly_initialised and not ours.load_report.unused, ours.load_report.summary()
    for name, tensor in model.state_dict().items():
        assert torch.equal(ours.state_dict()[name], tensor), f"{name}: the checkpoint's weights are not the run's"
    theirs = transformers.BertForPreTraining.from_pretrained(last, attn_implementation="eager").eval()
    batch = stack([SyntheticPretraining(4, seed=5)[i] for i in range(4)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        expected, got = ours.eval()(**inputs), theirs(**inputs)
    real = batch["attention_mask"].bool()
    d = (expected.prediction_logits[real] - got.prediction_logits[real]).abs().max().item()
    assert d <= 1e-5, f"transformers' logits from the checkpoint differ from minibert's by {d:.3g}"
