"""The CPU inference fast path (one Q/K/V product, weights packed for short inputs) gives the reference model's
outputs: every head, both attention paths, padded batches, inputs below and above the packing threshold."""

from __future__ import annotations

import copy

import pytest
import torch

from minibert.speed import fused_layers
from minibert import model as mb
from minibert.speed.fused_layers import FusedQKVAttention, PackedLinear, prepare_for_inference


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("cls", [mb.BertModel, mb.BertForSequenceClassification, mb.BertForTokenClassification,
                                 mb.BertForQuestionAnswering, mb.BertForMaskedLM])
def test_prepared_model_gives_the_reference_outputs(cls, attn, make_config, make_batch, randomize, diff_real):
    config = make_config("h36x3", attn_implementation=attn)
    reference = randomize(cls(config), seed=3).eval()
    prepared = prepare_for_inference(copy.deepcopy(reference))
    assert any(isinstance(m, FusedQKVAttention) for m in prepared.modules()), "attention was not replaced"
    assert any(isinstance(m, PackedLinear) for m in prepared.modules()), "no packed products"
    batch = make_batch(config)
    with torch.inference_mode():
        ours, theirs = prepared(**batch), reference(**batch)
    for name in ("last_hidden_state", "logits", "start_logits"):
        if getattr(theirs, name, None) is not None:
            expected, got = getattr(theirs, name), getattr(ours, name)
            diff = diff_real(got, expected, batch["attention_mask"]) if got.dim() > 2 or name == "start_logits" \
                else (got - expected).abs().max().item()
            assert diff <= 1e-5, f"{cls.__name__} {attn}: {name} differs by {diff:.2e}"


def test_long_inputs_take_the_plain_kernel_with_the_same_result(make_config, randomize, monkeypatch):
    config = make_config("pos512")
    reference = randomize(mb.BertModel(config), seed=4).eval()
    prepared = prepare_for_inference(copy.deepcopy(reference))
    ids = torch.randint(1, config.vocab_size, (4, 100), generator=torch.Generator().manual_seed(0))
    calls = {"packed": 0}
    original = torch.ops.mkldnn._linear_pointwise

    def counting(*args):
        calls["packed"] += 1
        return original(*args)
    monkeypatch.setattr(fused_layers.torch.ops.mkldnn, "_linear_pointwise", counting, raising=False)
    with torch.inference_mode():
        long_out = prepared(ids).last_hidden_state  # 400 rows: above PACKED_MAX_ROWS
        assert calls["packed"] == 0, "a 400-row product went to the packed kernel"
        short_out = prepared(ids[:1, :50]).last_hidden_state  # 50 rows
        assert calls["packed"] > 0, "a 50-row product did not use the packed weights"
        assert (long_out - reference(ids).last_hidden_state).abs().max() <= 1e-5, "plain-kernel path differs"
        assert (short_out - reference(ids[:1, :50]).last_hidden_state).abs().max() <= 1e-5, "packed path differs"


def test_other_dtypes_are_left_as_they_are(make_config):
    model = mb.BertModel(make_config()).double()
    prepare_for_inference(model)
    assert not any(isinstance(m, (FusedQKVAttention, PackedLinear)) for m in model.modules()), \
        "a float64 model was rearranged for the float32 kernels"
