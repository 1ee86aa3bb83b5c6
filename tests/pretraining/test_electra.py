"""ELECTRA (minibert.pretraining.electra): the replaced labels, sampling, the loss through the one training loop
(every parameter trained, gradient accumulation, exact resume), and the saved folders in transformers."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.data import Dataset

from minibert.config import BertConfig
from minibert.errors import CheckpointError, ConfigError, TrainingError
from minibert.model import BertForMaskedLM, BertForSequenceClassification, BertModel
from minibert.pretraining.electra import (Electra, ElectraForPreTraining, ElectraTask, ReplacedTokenTally, corrupt,
                                          initialise_electra, replaced_token_detection_loss, sample_tokens)
from minibert.pretraining.initialisation import INITS, unigram_log_frequencies
from minibert.pretraining.objective import PretrainingTask
from minibert.training import TrainingArguments, train

VOCAB, LENGTH, MASK_ID = 64, 16, 3
FIRST_WORD = 5  # ids below are special: 0 [PAD], 1 [CLS], 2 [SEP], 3 [MASK]


def tiny_config(**overrides) -> BertConfig:
    settings = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)
    return BertConfig(**{**settings, **overrides})


def tiny_electra(seed: int = 0, **overrides) -> ElectraForPreTraining:
    torch.manual_seed(seed)
    return ElectraForPreTraining(tiny_config(**overrides))


class MaskedSequences(Dataset):
    """`size` sequences of LENGTH ids counting up from a random start (so a masked id follows from its
    neighbours), 0-5 of their last positions padding, MLM-only. Each read masks about 20% of the real tokens afresh
    (dynamic masking, from torch's global generator, which the loop seeds per example), and at least one; a masked
    position shows [MASK]."""

    def __init__(self, size: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, VOCAB - FIRST_WORD, (size, 1), generator=generator)
        self.ids = FIRST_WORD + (starts + torch.arange(LENGTH)) % (VOCAB - FIRST_WORD)  # (size, LENGTH)
        self.lengths = LENGTH - torch.randint(0, 6, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        real = torch.arange(LENGTH) < self.lengths[index]
        ids = torch.where(real, self.ids[index], torch.zeros_like(self.ids[index]))
        chosen = (torch.rand(LENGTH) < 0.2) & real
        chosen[1] = True
        return {"input_ids": torch.where(chosen, torch.full_like(ids, MASK_ID), ids),
                "token_type_ids": torch.zeros_like(ids), "attention_mask": real.long(),
                "labels": torch.where(chosen, ids, torch.full_like(ids, -100))}


def stack(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([example[key] for example in examples]) for key in examples[0]}


def a_batch(size: int = 6) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    data = MaskedSequences(size)
    return stack([data[i] for i in range(size)])


def arguments(folder, **overrides) -> TrainingArguments:
    settings = dict(learning_rate=3e-3, log_every=1, progress_bar=None, plot=False, per_device_batch_size=8,
                    warmup_steps=1)
    return TrainingArguments(str(folder), **{**settings, **overrides})


def records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


# -- the replaced labels ------------------------------------------------------------------------------------------
def test_a_sample_equal_to_the_original_counts_as_original():
    # [CLS] [MASK] 9 [MASK] 12 [MASK] [SEP] [PAD]: masked at 1, 3, 4 (the data's random-token case: 12 shows where
    # 10 was) and 5; the generator samples 7 (the original), 20 (not), 10 (the original) and 11 (not).
    input_ids = torch.tensor([[1, MASK_ID, 9, MASK_ID, 12, MASK_ID, 2, 0]])
    labels = torch.tensor([[-100, 7, -100, 8, 10, 6, -100, -100]])
    corrupted, replaced = corrupt(input_ids, labels, torch.tensor([7, 20, 10, 11]))
    assert corrupted.tolist() == [[1, 7, 9, 20, 10, 11, 2, 0]], f"samples go to the masked positions in order: {corrupted}"
    assert replaced.tolist() == [[False, False, False, True, False, True, False, False]], \
        f"replaced must be exactly where the token now differs from the original: {replaced}"


def test_padding_is_never_labelled_or_counted():
    model, batch = tiny_electra(), a_batch()
    assert (batch["attention_mask"] == 0).any(), "the batch should have padding for this test to mean something"
    task = ElectraTask(MASK_ID)
    assert task.counts(batch)["weighted_rtd"] == batch["attention_mask"].sum(), "RTD counts real tokens only"
    output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    real = batch["attention_mask"].bool()
    assert not output.replaced[~real].any(), "a padded position can never be labelled replaced"
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        output.rtd_logits[real], output.replaced[real].float(), reduction="sum")
    assert task.sums(output, batch, 1.0)["weighted_rtd"][0].item() == pytest.approx(expected.item(), rel=1e-6)
    output.rtd_logits = output.rtd_logits.masked_fill(~real, 1e4)  # confidently "replaced" on padding
    assert task.sums(output, batch, 1.0)["weighted_rtd"][0].item() == pytest.approx(expected.item(), rel=1e-6), \
        "logits at padded positions must not reach the discriminator's loss"


def test_sampling_follows_the_generator_softmax():
    probabilities = torch.tensor([0.7, 0.2, 0.1, 0.0])
    logits = probabilities.log().expand(40_000, 4)  # (M, V); the last token can never be drawn
    drawn = sample_tokens(logits, torch.Generator().manual_seed(0))
    shares = torch.bincount(drawn, minlength=4).float() / len(drawn)
    assert torch.allclose(shares, probabilities, atol=0.01), f"draws {shares.tolist()} should follow {probabilities}"


def test_the_generator_is_half_as_deep_and_shares_the_embeddings():
    model = tiny_electra(num_hidden_layers=4)
    assert len(model.generator.bert.layers) == 2 and len(model.discriminator.layers) == 4, "default: half the depth"
    assert len(tiny_electra(num_hidden_layers=1).generator.bert.layers) == 1, "at least one layer"
    torch.manual_seed(0)
    assert len(ElectraForPreTraining(tiny_config(), generator_layers=3).generator.bert.layers) == 3
    assert model.generator.bert.embeddings is model.discriminator.embeddings, "one embedding block for both"
    with pytest.raises(ConfigError, match="generator_layers"):
        Electra(generator_layers=0)


def test_every_parameter_gets_a_gradient():
    """DDP waits for every parameter's gradient at every step: none may be left out of the loss."""
    model, batch = tiny_electra(), a_batch()
    terms = ElectraTask(MASK_ID).loss_terms(model, batch)
    sum(total / count for total, count in terms.values()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without a gradient: {missing}"


def test_the_task_refuses_nsp_batches():
    batch = {**a_batch(), "next_sentence_label": torch.zeros(6, dtype=torch.long)}
    with pytest.raises(TrainingError, match="no next-sentence prediction"):
        ElectraTask(MASK_ID).counts(batch)


# -- through the training loop ------------------------------------------------------------------------------------
def test_the_loss_falls_through_the_training_loop(tmp_path):
    data = MaskedSequences(16)
    result = train(tiny_electra(), ElectraTask(MASK_ID), data, data,
                   arguments(tmp_path, max_steps=60, per_device_batch_size=16, learning_rate=1e-2, weight_decay=0.0,
                             eval_every=60), stack)
    steps = records(tmp_path)
    first = steps[0]
    late = {key: sum(r[key] for r in steps[-5:]) / 5 for key in ("mlm_loss", "weighted_rtd_loss")}
    assert first["mlm_loss"] > 3.5, f"an untrained generator should be near ln({VOCAB}) = 4.16: {first}"
    assert first["weighted_rtd_loss"] == pytest.approx(50 * math.log(2), rel=0.05), f"50 x ln 2 untrained: {first}"
    assert late["mlm_loss"] < first["mlm_loss"] - 0.5, f"the generator's loss should fall: {first} -> {late}"
    assert late["weighted_rtd_loss"] < 0.7 * first["weighted_rtd_loss"], f"the discriminator's should: {late}"
    metrics = result.final_metrics
    for key in ("mlm_accuracy", "mlm_unigram_accuracy", "rtd_loss", "rtd_accuracy", "rtd_precision", "rtd_recall",
                "rtd_replaced_share", "loss"):
        assert key in metrics, f"held-out metrics lack {key!r}: {metrics}"
    assert metrics["loss"] == pytest.approx(metrics["mlm_loss"] + 50 * metrics["rtd_loss"]), "loss = MLM + 50 RTD"
    assert 0.1 < metrics["rtd_replaced_share"] < 0.3, f"about 20% masked, a few sampled back: {metrics}"
    assert metrics["rtd_accuracy"] > 1 - metrics["rtd_replaced_share"], \
        f"after 60 steps the discriminator should beat answering 'original' everywhere: {metrics}"


class FewWordSequences(MaskedSequences):
    """MaskedSequences counting through the first FEW_WORDS word ids only: the ids above never occur."""
    FEW_WORDS = 16

    def __init__(self, size: int, seed: int = 0):
        super().__init__(size, seed)
        self.ids = FIRST_WORD + (self.ids - FIRST_WORD) % self.FEW_WORDS


def test_the_discriminator_learns_to_detect_visible_replacements(tmp_path, monkeypatch):
    """Replacements drawn from ids the corpus never holds are visible from the token alone: a discriminator whose
    labels, head, loss and gradients work finds most of them on held-out data within 40 steps. (A broken one --
    labels not aligned with its input, no gradient, a wrong loss -- stays at answering "original" everywhere:
    recall 0, AUC 0.5.)"""
    unseen = torch.arange(FIRST_WORD + FewWordSequences.FEW_WORDS, VOCAB)

    def sample_unseen(logits, generator=None):  # (M, V) -> (M,): uniform over the unseen ids
        return unseen[torch.randint(len(unseen), logits.shape[:1], generator=generator, device=logits.device)]

    monkeypatch.setattr("minibert.pretraining.electra.sample_tokens", sample_unseen)
    result = train(tiny_electra(), ElectraTask(MASK_ID), FewWordSequences(64), FewWordSequences(32, seed=1),
                   arguments(tmp_path, max_steps=40, per_device_batch_size=16, learning_rate=1e-2, weight_decay=0.0,
                             eval_every=40, log_every=40), stack)
    metrics = result.final_metrics
    assert metrics["rtd_replaced_share"] > 0.15, f"about 20% masked, every sample replaced: {metrics}"
    assert metrics["rtd_recall"] > 0.5 and metrics["rtd_auc"] > 0.9, \
        f"held out, the discriminator should find most visible replacements: {metrics}"
    assert metrics["rtd_accuracy"] > 1 - metrics["rtd_replaced_share"] + 0.05, \
        f"and clearly beat answering 'original' everywhere: {metrics}"


def test_accumulation_equals_one_big_batch(tmp_path):
    data = MaskedSequences(32)
    big_model, small_model = tiny_electra(), tiny_electra()
    train(big_model, ElectraTask(), data, None, arguments(tmp_path / "big", max_steps=3), stack)
    train(small_model, ElectraTask(), data, None,
          arguments(tmp_path / "small", max_steps=3, per_device_batch_size=2, grad_accumulation_steps=4), stack)
    for b, s in zip(records(tmp_path / "big"), records(tmp_path / "small")):
        for key in ("mlm_loss", "weighted_rtd_loss", "grad_norm"):
            assert abs(b[key] - s[key]) < 1e-5, f"step {b['step']}: {key} {s[key]} with 4x2, {b[key]} with 8"
    differences = [(a - b).abs().max().item() for a, b in zip(big_model.parameters(), small_model.parameters())]
    assert max(differences) < 1e-6, f"parameters after 3 steps differ by {max(differences)}"


class NanAtCall(ElectraTask):
    def __init__(self, call: int):
        super().__init__(MASK_ID)
        self.call, self.calls = call, 0

    def loss_terms(self, model, batch):
        self.calls += 1
        terms = super().loss_terms(model, batch)
        if self.calls == self.call:
            terms["mlm"] = (terms["mlm"][0] * math.nan, terms["mlm"][1])
        return terms


def test_resume_repeats_the_uninterrupted_run(tmp_path):
    """Sampling draws from the run's random generator, which the checkpoint restores (dropout on, too)."""
    data, dropout = MaskedSequences(32), dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    train(tiny_electra(**dropout), ElectraTask(MASK_ID), data, None, arguments(tmp_path / "whole", max_steps=8), stack)
    with pytest.raises(TrainingError, match="step 6"):
        train(tiny_electra(**dropout), NanAtCall(6), data, None,
              arguments(tmp_path / "cut", max_steps=8, save_every=4), stack)
    train(tiny_electra(**dropout), ElectraTask(MASK_ID), data, None,
          arguments(tmp_path / "cut", max_steps=8, save_every=4, resume=True), stack)
    expected, got = records(tmp_path / "whole"), records(tmp_path / "cut")
    assert [r["step"] for r in got] == list(range(1, 9)), "the resumed run should log steps 5-8 after 1-4"
    worst = max(abs(a["loss"] - b["loss"]) for a, b in zip(expected, got))
    assert worst <= 1e-5, f"resumed at step 4, the losses differ by up to {worst}"


def test_resuming_another_model_class_is_refused(tmp_path):
    data = MaskedSequences(16)
    train(tiny_electra(), ElectraTask(), data, None, arguments(tmp_path, max_steps=2), stack)
    torch.manual_seed(0)
    with pytest.raises(CheckpointError, match="holds a ElectraForPreTraining and this run trains a BertForMaskedLM"):
        train(BertForMaskedLM(tiny_config()), PretrainingTask(), data, None,
              arguments(tmp_path, max_steps=4, resume=True), stack)


# -- saving: the discriminator for transformers and fine-tuning, the generator for fill-mask ----------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model with every weight moved off its initial value (so a misplaced LayerNorm or bias shows), saved."""
    model = tiny_electra()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    folder = tmp_path_factory.mktemp("electra") / "final"
    model.save_pretrained(folder)
    return model.eval(), folder


def test_the_discriminator_loads_as_a_plain_bert_in_transformers_and_minibert(saved):
    transformers = pytest.importorskip("transformers")
    model, folder = saved
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertModel"]
    theirs = transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    ours = BertModel.from_pretrained(folder)
    batch = a_batch()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = model.discriminator(**inputs).last_hidden_state[real]
        for name, loaded in (("transformers", theirs(**inputs)), ("minibert", ours(**inputs))):
            difference = (loaded.last_hidden_state[real] - expected).abs().max().item()
            assert difference <= 1e-5, f"{name}'s BertModel differs from the discriminator by {difference:.2e}"


def test_the_generator_loads_as_a_masked_lm_in_transformers(saved):
    transformers = pytest.importorskip("transformers")
    model, folder = saved
    generator = folder / "generator"
    assert json.loads((generator / "config.json").read_text())["num_hidden_layers"] == 1
    theirs = transformers.BertForMaskedLM.from_pretrained(str(generator), attn_implementation="eager").eval()
    batch = a_batch()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        difference = (theirs(**inputs).logits[real] - model.generator(**inputs).logits[real]).abs().max().item()
    assert difference <= 1e-5, f"transformers' BertForMaskedLM differs from the generator by {difference:.2e}"


def test_a_saved_model_loads_back_whole(saved):
    model, folder = saved
    loaded = ElectraForPreTraining.from_pretrained(folder)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    different = [name for name in ours if not torch.equal(ours[name], theirs[name])]
    assert not different, f"not restored: {different}"
    assert loaded.generator.bert.embeddings is loaded.discriminator.embeddings, "still one embedding block"


def test_fine_tuning_reads_the_discriminator_as_its_encoder(saved):
    model, folder = saved
    classifier = BertForSequenceClassification.from_pretrained(folder, num_labels=2)
    new = sorted(classifier.load_report.newly_initialised)
    assert new == ["bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.bias", "classifier.weight"], \
        f"only the pooler and the classifier may be new: {new}"
    for name, tensor in model.discriminator.state_dict().items():
        assert torch.equal(classifier.bert.state_dict()[name], tensor), f"encoder tensor {name} differs"


def test_replaced_token_detection_loss_is_the_mean_over_real_tokens():
    logits = torch.tensor([[2.0, -1.0, 0.5, 9.0]])
    replaced = torch.tensor([[True, False, False, True]])
    real = torch.tensor([[True, True, True, False]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[0, :3], torch.tensor([1.0, 0.0, 0.0]))
    assert replaced_token_detection_loss(logits, replaced, real).item() == pytest.approx(expected.item())


def test_continuing_from_a_plain_bert_checkpoint(tmp_path):
    torch.manual_seed(0)
    bert = BertForMaskedLM(tiny_config(num_hidden_layers=4))
    bert.save_pretrained(tmp_path)
    model = ElectraForPreTraining.from_pretrained(tmp_path)
    assert len(model.generator.bert.layers) == 2, "a new generator, half as deep"
    for name, tensor in bert.bert.state_dict().items():
        assert torch.equal(model.discriminator.state_dict()[name], tensor), f"discriminator's {name} not loaded"
    assert model.generator.bert.embeddings is model.discriminator.embeddings, "the loaded embeddings are shared"


def test_a_from_scratch_scheme_starts_both_networks():
    model = tiny_electra()
    counts = torch.arange(VOCAB).numpy()
    initialise_electra(model, INITS["local-attention"], counts)
    for name, layers in (("generator", model.generator.bert.layers), ("discriminator", model.discriminator.layers)):
        for layer in layers:
            assert torch.equal(layer.attention.query.weight, layer.attention.key.weight), f"{name}: keys = queries"
    assert torch.allclose(model.generator.mlm.bias, unigram_log_frequencies(counts)), "the generator's MLM bias"


def test_the_auc_is_the_chance_a_replaced_token_scores_above_an_original():
    generator = torch.Generator().manual_seed(0)
    replaced = torch.rand(1, 4000, generator=generator) < 0.15
    logits = torch.randn(1, 4000, generator=generator) - 2 + 1.0 * replaced  # shifted up when replaced: below 0
    real = torch.ones_like(replaced)
    tally = ReplacedTokenTally()
    tally.add(logits, replaced, real)
    higher = (logits[replaced][:, None] > logits[~replaced][None, :]).float().mean().item()  # every pair
    metrics = tally.metrics()
    assert metrics["rtd_auc"] == pytest.approx(higher, abs=2e-3), f"histogram AUC {metrics['rtd_auc']}, exact {higher}"
    assert metrics["rtd_recall"] < 0.2 < metrics["rtd_auc"] - 0.5, "ranks well, yet few logits above 0"
