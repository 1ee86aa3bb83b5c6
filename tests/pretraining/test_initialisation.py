"""The "local-attention" initialisation: still a plain BERT that transformers loads, attention local at the first
step, and an MLM bias at the log unigram frequencies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import transformers

from minibert.config import BertConfig
from minibert.errors import ConfigError
from minibert.model import BertForMaskedLM, BertForPreTraining
from minibert.pretraining.initialisation import POSITION_SCALE, InitScheme, initialise, sinusoids

CONFIG = dict(vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
              max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
              attn_implementation="eager")


def model(scheme: str, cls=BertForMaskedLM, counts=np.ones(200, dtype=np.int64)):
    torch.manual_seed(0)
    bert = cls(BertConfig(**CONFIG))
    initialise(bert, scheme, counts)
    return bert.eval()


def neighbour_attention(bert) -> float:
    """Mean attention probability on the previous and the next token, first layer, over random sentences."""
    ids = torch.randint(5, 200, (8, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        probs = bert.bert(ids, output_attentions=True).attentions[0]  # (B, H, T, T)
    return float((torch.diagonal(probs, -1, -2, -1).mean() + torch.diagonal(probs, 1, -2, -1).mean()) / 2)


def test_attention_starts_local():
    uniform = 1 / 48
    assert neighbour_attention(model("bert")) == pytest.approx(uniform, rel=0.2), \
        "under BERT's initialisation attention should start about uniform"
    local = neighbour_attention(model("local-attention"))
    assert local > 4 * uniform, f"a neighbour should get several times the uniform share, got {local:.3f}"


def test_it_is_still_a_bert_checkpoint(tmp_path):
    bert = model("local-attention", BertForPreTraining)
    layer = bert.bert.layers[0].attention
    assert torch.equal(layer.query.weight, layer.key.weight), "keys should start equal to queries"
    positions = bert.bert.embeddings.position_embeddings.weight
    torch.testing.assert_close(positions, POSITION_SCALE * sinusoids(64, 64), msg="positions should be sinusoids")
    bert.save_pretrained(tmp_path)
    theirs = transformers.BertForPreTraining.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    ids = torch.randint(5, 200, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        difference = (theirs(ids).prediction_logits - bert(ids).prediction_logits).abs().max().item()
    assert difference < 1e-5, f"transformers reads the initialised model differently ({difference:.1e})"


def test_mlm_bias_starts_at_the_log_unigram_frequencies():
    counts = np.zeros(200, dtype=np.int64)
    counts[7], counts[8] = 999, 99
    bias = model("local-attention", counts=counts).mlm.bias
    total = counts.sum() + 200  # add-one smoothing
    assert bias[7].item() == pytest.approx(math.log(1000 / total), rel=1e-5), "bias of a frequent token"
    assert bias[8].item() == pytest.approx(math.log(100 / total), rel=1e-5)
    assert bias[0].item() == pytest.approx(math.log(1 / total), rel=1e-5), "an unseen token gets add-one"


def test_unknown_scheme_and_missing_counts_are_refused():
    with pytest.raises(ConfigError, match="unknown initialisation 'xavier'"):
        initialise(BertForMaskedLM(BertConfig(**CONFIG)), "xavier")
    with pytest.raises(ConfigError, match="needs the training data's token counts"):
        initialise(BertForMaskedLM(BertConfig(**CONFIG)), "local-attention")


def test_each_change_can_be_made_alone():
    torch.manual_seed(0)
    bert = BertForMaskedLM(BertConfig(**CONFIG))
    before = {name: p.clone() for name, p in bert.named_parameters()}
    initialise(bert, InitScheme(query_equals_key=True))
    changed = {name for name, p in bert.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"bert.layers.0.attention.query.weight", "bert.layers.0.attention.key.weight",
                       "bert.layers.1.attention.query.weight", "bert.layers.1.attention.key.weight"}, changed
