"""The cloze check the pretraining demo and ablation report (scripts/pretraining_cloze.py): a sentence counts as a
hit when an accepted word is among the model's top k at its [MASK], on a tiny model whose predictions are set by
its MLM bias; and the sentence lists stay well formed (one [MASK] each, held-out ones not among the demo's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from minibert.config import BertConfig
from minibert.model import BertForMaskedLM
from minibert.tokenizer import BertTokenizer

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "paris", "is", "the", "capital", "of", "france", ".", "he",
         "was", "born", "in", "1950", "by"]
# Ranked predictions: the bias dominates the tiny model's logits (its hidden states times 0.02-scale embeddings).
RANKED = {"of": 30.0, "in": 20.0, "the": 10.0}


def load_cloze():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location("pretraining_cloze", SCRIPTS / "pretraining_cloze.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cloze")
    (folder / "vocab.txt").write_text("".join(token + "\n" for token in VOCAB), encoding="utf-8")
    tokenizer = BertTokenizer.from_vocab(folder / "vocab.txt")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32, max_position_embeddings=32))
    with torch.no_grad():
        for token, bias in RANKED.items():
            model.mlm.bias[VOCAB.index(token)] = bias
    return model, tokenizer


SENTENCES = [("paris is the capital [MASK] france.", {"of"}),
             ("he was born [MASK] 1950.", {"in"}),
             ("the capital of france is [MASK].", {"paris", "tokyo"})]


def test_a_hit_is_an_accepted_word_in_the_top_k(model_and_tokenizer):
    cloze = load_cloze()
    model, tokenizer = model_and_tokenizer
    top1 = cloze.top_k_hits(model, tokenizer, SENTENCES, k=1)
    assert [hit for *_, hit in top1] == [True, False, False], f"only 'of' is the top guess: {top1}"
    top2 = cloze.top_k_hits(model, tokenizer, SENTENCES, k=2)
    assert [hit for *_, hit in top2] == [True, True, False], f"'in' is second, 'paris' far below: {top2}"
    sentence, guesses, _ = top2[0]
    assert sentence == SENTENCES[0][0] and [token for token, _ in guesses] == ["of", "in"], guesses
    assert guesses[0][1] > guesses[1][1] > 0, f"(token, probability) in falling order expected: {guesses}"
    assert cloze.hit_rate(top1) == pytest.approx(1 / 3) and cloze.hit_rate(top2) == pytest.approx(2 / 3)


def test_the_sentence_lists_are_well_formed():
    cloze = load_cloze()
    for sentence, accepted in cloze.DEMO + cloze.HELD_OUT:
        assert sentence.count("[MASK]") == 1, f"one [MASK] per sentence: {sentence!r}"
        assert accepted and all(word == word.lower() and " " not in word for word in accepted), \
            f"accepted answers are single lower-case words: {sentence!r} {accepted}"
    assert len(cloze.DEMO) == 5, "the issue's five demo sentences"
    assert not {s for s, _ in cloze.DEMO} & {s for s, _ in cloze.HELD_OUT}, "held-out sentences must not be demo ones"
