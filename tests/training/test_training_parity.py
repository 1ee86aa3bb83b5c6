"""Training parity with Hugging Face transformers over a whole optimisation, not one forward pass.

From the same initial weights, on the same batches in the same order, minibert's loop (`train` with
PretrainingTask, MLM + NSP; and with SequenceClassificationTask) and a reference loop written here the way a
transformers user writes one (`transformers.BertForPreTraining` / `BertForSequenceClassification`,
`torch.optim.AdamW` with no decay on biases and LayerNorm weights, `transformers.get_linear_schedule_with_warmup`,
`clip_grad_norm_`), dropout 0, float32, must report the same loss at every one of STEPS steps (relative
difference LOSS_REL_TOL) and end with the same weights (WEIGHT_TOL) and outputs (OUTPUT_TOL).

Both models use eager attention here, so they compute the same operations and differ only by float rounding (for
instance, clipping sums the per-tensor gradient norms in each library's parameter order), which training then
magnifies: measured, 2.7e-7 relative at worst in loss over 200 pretraining steps. `test_sdpa_path_tracks_the_reference` runs minibert's default fast
path (SDPA + padding removal) against the same reference with the same bounds.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from synthetic_training import LENGTH, SyntheticPretraining, stack, tiny_model

from minibert.model import BertForSequenceClassification
from minibert.finetuning.objective import SequenceClassificationTask
from minibert.pretraining.objective import PretrainingTask
from minibert.training import TrainingArguments, train
from minibert.training.batches import EpochBatches

STEPS = 200
LOSS_REL_TOL = 1e-4
# Weights: relative to each tensor's largest entry. Measured: 4.3e-6 (pretraining), 8.9e-5 (fine-tuning, where the
# last layer's weights get their gradient through the [CLS] position alone: small gradients, which Adam's division
# by their running RMS makes as sensitive to rounding as large ones). The trained models' outputs: OUTPUT_TOL.
WEIGHT_TOL = 5e-4
OUTPUT_TOL = 1e-5
BATCH, EXAMPLES, SEED = 8, 64, 3  # 8 steps an epoch: 25 epochs, each in its own order
PRETRAINING = dict(learning_rate=2e-3, warmup_steps=20, weight_decay=0.01, max_grad_norm=1.0)
# Fine-tuning at 2e-3 also agrees (7e-5 at worst), but its loss spikes when the task is learnt, and the spike
# magnifies rounding differences (the two libraries sum the per-tensor norms for clipping in another order) from
# ~1e-7 to near the bound; at a fine-tuning learning rate the margin is wide.
FINE_TUNING = {**PRETRAINING, "learning_rate": 1e-3}


def minibert_losses(model, task, dataset, folder, hyper: dict) -> list[dict]:
    args = TrainingArguments(str(folder), max_steps=STEPS, per_device_batch_size=BATCH, seed=SEED, log_every=1,
                             progress_bar=False, plot=False, **hyper)
    train(model, task, dataset, None, args, stack)
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def batches_in_loop_order(dataset):
    """The batches `train` reads: epoch e in the order EpochBatches draws for (SEED, e)."""
    steps_per_epoch = len(dataset) // BATCH
    for step in range(STEPS):
        epoch, index = divmod(step, steps_per_epoch)
        if index == 0:
            order = list(EpochBatches(len(dataset), BATCH, 1, rank=0, world_size=1, seed=SEED, epoch=epoch))
        yield stack([dataset[i] for i, _ in order[index]])


def reference_losses(model, dataset, hyper: dict) -> list[tuple[float, float]]:
    """(loss, lr) per step of the textbook transformers loop."""
    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
               "weight_decay": hyper["weight_decay"]},
              {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
               "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=hyper["learning_rate"], betas=(0.9, 0.999), eps=1e-6)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, hyper["warmup_steps"], STEPS)
    model.train()
    history = []
    for batch in batches_in_loop_order(dataset):
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hyper["max_grad_norm"])
        history.append((loss.item(), scheduler.get_last_lr()[0]))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return history


def assert_same_trajectory(ours: list[dict], theirs: list[tuple[float, float]], hyper: dict) -> float:
    assert len(ours) == STEPS, f"minibert logged {len(ours)} steps, not {STEPS}"
    worst = 0.0
    for record, (loss, lr) in zip(ours, theirs):
        assert record["lr"] == pytest.approx(lr, rel=1e-12, abs=1e-15), \
            f"step {record['step']}: learning rate {record['lr']} vs transformers' schedule {lr}"
        relative = abs(record["loss"] - loss) / abs(loss)
        worst = max(worst, relative)
        assert relative <= LOSS_REL_TOL, \
            f"step {record['step']}: loss {record['loss']:.7f} vs the reference's {loss:.7f} ({relative:.1e} relative)"
    first, last = (sum(r["loss"] for r in epoch) / len(epoch) for epoch in (ours[:8], ours[-8:]))
    assert last < 0.8 * first, f"the run should learn something, or parity proves little: loss {first:.2f} -> {last:.2f}"
    assert any(r["grad_norm"] > hyper["max_grad_norm"] for r in ours), "clipping never acted; the test misses it"
    return worst


def assert_same_weights(final_folder, reference, cls, batch) -> tuple[float, float]:
    """The largest difference over all weights but the attention key biases, relative to each tensor's largest
    entry, and over the two trained models' outputs on `batch`, relative to their largest entry.

    A key bias adds q·b to every score of a query's row, which softmax ignores: its gradient is zero in exact
    arithmetic, so what it receives is rounding noise, which Adam normalises into real steps in both libraries,
    differently. It changes no output, which the comparison of outputs checks."""
    ours = cls.from_pretrained(str(final_folder), attn_implementation="eager")
    parameters = dict(ours.named_parameters())
    worst = 0.0
    for name, theirs in reference.named_parameters():
        if name.endswith("attention.self.key.bias"):
            continue
        difference = (parameters[name] - theirs).abs().max().item() / theirs.abs().max().clamp(min=1e-12).item()
        worst = max(worst, difference)
        assert difference <= WEIGHT_TOL, f"{name} differs by {difference:.1e} (relative to its largest entry)"
    ours.eval(), reference.eval()
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        got, expected = ours(**inputs), reference(**inputs)
    outputs = [(got.logits, expected.logits)] if hasattr(expected, "logits") and expected.logits is not None else \
        [(got.prediction_logits[real], expected.prediction_logits[real]),
         (got.seq_relationship_logits, expected.seq_relationship_logits)]
    output_worst = max((a - b).abs().max().item() / b.abs().max().item() for a, b in outputs)
    assert output_worst <= OUTPUT_TOL, f"the trained models' outputs differ by {output_worst:.1e} (relative)"
    return worst, output_worst


def pretraining_pair(tmp_path, attn_implementation: str = "eager"):
    ours = tiny_model(seed=0, attn_implementation=attn_implementation)
    ours.save_pretrained(tmp_path / "init")
    theirs = transformers.BertForPreTraining.from_pretrained(str(tmp_path / "init"), attn_implementation="eager")
    return ours, theirs


def test_pretraining_follows_transformers_for_200_steps(tmp_path):
    ours, theirs = pretraining_pair(tmp_path)
    dataset = SyntheticPretraining(EXAMPLES, seed=1)
    minibert_records = minibert_losses(ours, PretrainingTask(), dataset, tmp_path / "run", PRETRAINING)
    worst_loss = assert_same_trajectory(minibert_records, reference_losses(theirs, dataset, PRETRAINING), PRETRAINING)
    worst_weight, worst_output = assert_same_weights(tmp_path / "run" / "final", theirs,
                                                     transformers.BertForPreTraining, stack([dataset[i] for i in range(8)]))
    print(f"\npretraining parity over {STEPS} steps: loss {worst_loss:.1e}, weights {worst_weight:.1e}, "
          f"outputs {worst_output:.1e} (relative)")


def test_sdpa_path_tracks_the_reference(tmp_path):
    ours, theirs = pretraining_pair(tmp_path, attn_implementation="sdpa")
    assert ours.config.unpad, "the default path removes padding; this test is about that path"
    dataset = SyntheticPretraining(EXAMPLES, seed=1)
    minibert_records = minibert_losses(ours, PretrainingTask(), dataset, tmp_path / "run", PRETRAINING)
    worst_loss = assert_same_trajectory(minibert_records, reference_losses(theirs, dataset, PRETRAINING), PRETRAINING)
    worst_weight, worst_output = assert_same_weights(tmp_path / "run" / "final", theirs,
                                                     transformers.BertForPreTraining, stack([dataset[i] for i in range(8)]))
    print(f"\nSDPA path over {STEPS} steps: loss {worst_loss:.1e}, weights {worst_weight:.1e}, "
          f"outputs {worst_output:.1e} (relative)")


class SyntheticSentiment(torch.utils.data.Dataset):
    """Padded sequences whose label says whether word 7 or word 9 occurs more often: learnable from the tokens."""

    def __init__(self, size: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, 12, (size, LENGTH), generator=generator)
        self.lengths = LENGTH - torch.randint(0, 6, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        real = torch.arange(LENGTH) < self.lengths[index]
        ids = torch.where(real, self.ids[index], torch.zeros_like(self.ids[index]))
        ids[0] = 1  # [CLS]
        label = int((ids == 7).sum() > (ids == 9).sum())
        return {"input_ids": ids, "attention_mask": real.long(), "token_type_ids": torch.zeros_like(ids),
                "labels": torch.tensor(label)}


def test_fine_tuning_follows_transformers_for_200_steps(tmp_path):
    ours = tiny_model(BertForSequenceClassification, seed=0, attn_implementation="eager", num_labels=2)
    ours.save_pretrained(tmp_path / "init")
    theirs = transformers.BertForSequenceClassification.from_pretrained(str(tmp_path / "init"),
                                                                         attn_implementation="eager")
    dataset = SyntheticSentiment(EXAMPLES, seed=2)
    minibert_records = minibert_losses(ours, SequenceClassificationTask(), dataset, tmp_path / "run", FINE_TUNING)
    worst_loss = assert_same_trajectory(minibert_records, reference_losses(theirs, dataset, FINE_TUNING), FINE_TUNING)
    worst_weight, worst_output = assert_same_weights(tmp_path / "run" / "final", theirs,
                                                     transformers.BertForSequenceClassification,
                                                     stack([dataset[i] for i in range(8)]))
    print(f"\nfine-tuning parity over {STEPS} steps: loss {worst_loss:.1e}, weights {worst_weight:.1e}, "
          f"outputs {worst_output:.1e} (relative)")
