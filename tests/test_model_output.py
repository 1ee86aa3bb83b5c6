"""minibert's outputs behave like transformers' ModelOutput (attribute, key and index access, to_tuple, loss first),
and transformers' own Trainer trains and predicts with a minibert classifier unchanged."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.utils._pytree as pytree

from minibert import model as mb


def _classifier(make_config, seed=0):
    torch.manual_seed(seed)
    return mb.BertForSequenceClassification(make_config(num_labels=3)).eval()


def test_output_is_read_by_attribute_key_and_index(make_config, make_batch):
    model = _classifier(make_config)
    batch = make_batch(model.config)
    labels = torch.arange(batch["input_ids"].shape[0]) % 3
    with torch.no_grad():
        plain = model(**batch)
        labelled = model(**batch, labels=labels)
    assert isinstance(plain, dict), "Trainer and accelerate test isinstance(outputs, dict) to read outputs['loss']"
    assert list(plain.keys()) == ["logits"], f"keys should be the non-None fields, got {list(plain.keys())}"
    assert plain[0] is plain.logits and plain["logits"] is plain.logits, "index 0 / key should be the logits"
    assert list(labelled.keys()) == ["loss", "logits"], "with labels the loss must come first, as in transformers"
    assert labelled[0] is labelled.loss and labelled[1] is labelled.logits
    loss, logits = labelled.to_tuple()
    assert loss is labelled.loss and logits is labelled.logits, "to_tuple() should give (loss, logits)"
    assert labelled[1:] == (labelled.logits,), "a slice should be a tuple of the fields after the loss"
    assert "hidden_states" not in labelled and labelled.hidden_states is None, "None fields are not keys"
    with pytest.raises(KeyError):
        labelled["hidden_states"]


def test_output_fields_track_assignment_and_survive_copies(make_config, make_batch):
    model = _classifier(make_config)
    with torch.no_grad():
        out = model(**make_batch(model.config), output_hidden_states=True)
    assert list(out.keys()) == ["logits", "hidden_states"], f"got {list(out.keys())}"
    out.logits = out.logits * 2
    assert out["logits"] is out.logits, "setting an attribute must update the key"
    out["logits"] = out.logits / 2
    assert out[0] is out.logits, "setting a key must update the attribute"
    out.hidden_states = None
    assert list(out.keys()) == ["logits"], "a field set to None should stop being a key"
    with pytest.raises(KeyError):
        out["no_such_field"] = 1
    for clone in (copy.deepcopy(out), pickle.loads(pickle.dumps(out))):
        assert type(clone) is type(out) and list(clone.keys()) == ["logits"]
        assert torch.equal(clone.logits, out.logits), "a copied output lost its values"
    leaves, spec = pytree.tree_flatten(out)
    assert len(leaves) == 1 and leaves[0] is out.logits, "pytree (DDP, compile, export) should see the tensors inside"
    assert pytree.tree_unflatten(leaves, spec).logits is out.logits


def test_field_positions_match_transformers(make_config):
    """Index access is position-based, so a field transformers also has must sit where transformers puts it."""
    from transformers.modeling_outputs import (BaseModelOutputWithPoolingAndCrossAttentions, MaskedLMOutput,
                                               QuestionAnsweringModelOutput, SequenceClassifierOutput)
    from transformers.models.bert.modeling_bert import BertForPreTrainingOutput
    from dataclasses import fields
    pairs = [(mb.EncoderOutput, BaseModelOutputWithPoolingAndCrossAttentions), (mb.PreTrainingOutput,
             BertForPreTrainingOutput), (mb.ClassifierOutput, SequenceClassifierOutput),
             (mb.ClassifierOutput, MaskedLMOutput), (mb.QuestionAnsweringOutput, QuestionAnsweringModelOutput)]
    for ours, theirs in pairs:
        their_names = [f.name for f in fields(theirs)]
        shared = [f.name for f in fields(ours) if f.name in their_names]
        assert shared == [name for name in their_names if name in shared], \
            f"{ours.__name__}: shared fields in another order than {theirs.__name__}'s"
        assert [f.name for f in fields(ours)][:len(shared)] == shared, \
            f"{ours.__name__}: minibert's own fields must come after those transformers has"


def test_hf_trainer_trains_and_predicts_a_minibert_classifier(make_config, tmp_path):
    """transformers.Trainer, unchanged, on a minibert model: training steps read the loss it returns, prediction
    reads its logits, which must equal the model's own."""
    import transformers
    model = _classifier(make_config, seed=1).train()
    generator = torch.Generator().manual_seed(0)
    vocab, length = model.config.vocab_size, 12
    examples = [{"input_ids": torch.randint(5, vocab, (length,), generator=generator),
                 "attention_mask": torch.ones(length, dtype=torch.long), "labels": torch.tensor(i % 3)}
                for i in range(24)]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4,
                                          per_device_eval_batch_size=8, learning_rate=1e-3, logging_steps=1,
                                          save_strategy="no", report_to=[], use_cpu=True, seed=0,
                                          dataloader_num_workers=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=examples, eval_dataset=examples)
    result = trainer.train()
    assert trainer.state.global_step == 6, f"Trainer ran {trainer.state.global_step} steps, not 6"
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses))), f"logged losses: {losses}"
    assert result.training_loss == pytest.approx(sum(losses) / len(losses), rel=1e-3)
    changed = [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]
    assert "classifier.weight" in changed and any(n.startswith("bert.layers.") for n in changed), \
        "Trainer's optimizer did not update the minibert weights"

    prediction = trainer.predict(examples)
    model.eval()
    with torch.no_grad():
        batch = {k: torch.stack([e[k] for e in examples]) for k in examples[0]}
        expected = model(**batch)
    assert prediction.predictions.shape == (24, 3), f"predictions of shape {prediction.predictions.shape}"
    d = abs(torch.from_numpy(prediction.predictions) - expected.logits).max().item()
    assert d <= 1e-5, f"Trainer.predict's logits differ from the model's by {d:.3g}"
    assert prediction.metrics["test_loss"] == pytest.approx(expected.loss.item(), rel=1e-4), \
        "Trainer's evaluation loss should be the loss minibert returns"


def test_num_parameters_counts_as_transformers_does(make_config, hf_config):
    """Trainer calls num_parameters(exclude_embeddings=True) to count FLOPs; the count must be transformers'."""
    import transformers
    config = make_config(num_labels=3)
    ours = mb.BertForSequenceClassification(config)
    theirs = transformers.BertForSequenceClassification(hf_config(config))
    for options in ({}, {"exclude_embeddings": True}, {"only_trainable": True}):
        assert ours.num_parameters(**options) == theirs.num_parameters(**options), f"num_parameters({options})"
    ours.bert.embeddings.requires_grad_(False)
    theirs.bert.embeddings.requires_grad_(False)
    assert ours.num_parameters(only_trainable=True) == theirs.num_parameters(only_trainable=True)
