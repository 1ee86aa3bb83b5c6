"""Distributional word vectors: co-occurrence counts inside examples only, PPMI + SVD vectors that put words of the
same contexts together, and the "distributional" initialisation that starts the word embeddings from them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minibert.config import BertConfig
from minibert.errors import ConfigError
from minibert.model import BertForMaskedLM
from minibert.pretraining.cooccurrence import cooccurrence_counts, ppmi_vectors, sum_by_key
from minibert.pretraining.initialisation import WORD_VECTOR_SCALE, initialise

SPECIALS = [0, 1, 2, 3]  # stand-ins for [PAD], [CLS], [SEP], [MASK]


def as_dict(keys: np.ndarray, weights: np.ndarray, vocab: int) -> dict[tuple[int, int], float]:
    return {(int(k) // vocab, int(k) % vocab): float(w) for k, w in zip(keys, weights)}


def test_pairs_are_weighted_by_distance_and_stay_inside_examples():
    # two examples: [CLS] 5 6 7 [SEP] | [CLS] 8 [SEP]
    ids = np.array([1, 5, 6, 7, 2, 1, 8, 2])
    counts = as_dict(*cooccurrence_counts(ids, np.array([0, 5, 8]), vocab_size=10, ignored_ids=SPECIALS,
                                          window=2), vocab=10)
    assert counts == {(5, 6): 1.0, (6, 5): 1.0, (6, 7): 1.0, (7, 6): 1.0, (5, 7): 0.5, (7, 5): 0.5}, \
        f"expected the three pairs of the first example, both ways, 1/distance each; got {counts}"


def test_repeated_pairs_add_up():
    keys, weights = sum_by_key(np.array([7, 3, 7, 7]), np.array([1.0, 2.0, 0.5, 0.25], dtype=np.float32))
    assert keys.tolist() == [3, 7] and weights.tolist() == [2.0, 1.75]


def corpus_of_two_families(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sentences where tokens 10-14 ("positive" words) keep company with 20-24 and tokens 15-19 with 25-29: a
    word's vector should land near the words of its own family."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(400):
        family = rng.integers(2)
        words = rng.integers(10, 15, size=3) + 5 * family
        context = rng.integers(20, 25, size=3) + 5 * family
        examples.append(np.r_[1, rng.permutation(np.r_[words, context]), 2])
    starts = np.cumsum([0] + [len(e) for e in examples])
    return np.concatenate(examples), starts


def test_words_of_the_same_contexts_get_close_vectors():
    ids, starts = corpus_of_two_families()
    vectors = ppmi_vectors(*cooccurrence_counts(ids, starts, 40, SPECIALS), vocab_size=40, width=8)
    unit = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    same = unit[10] @ unit[11]
    other = unit[10] @ unit[15]
    assert same > other + 0.5, f"cosine with a word of the same family {same:.2f}, of the other {other:.2f}"
    assert torch.all(vectors[30:] == 0) and torch.all(vectors[:4] == 0), \
        "tokens that occur in no pair (never seen, or specials) should get zero vectors"


def test_vectors_do_not_depend_on_the_global_generator():
    counts = cooccurrence_counts(*corpus_of_two_families(), 40, SPECIALS)
    torch.manual_seed(1)
    first = ppmi_vectors(*counts, vocab_size=40, width=8)
    state = torch.random.get_rng_state()
    torch.manual_seed(2)
    second = ppmi_vectors(*counts, vocab_size=40, width=8)
    torch.testing.assert_close(first, second, msg="the SVD's random projection should come from its own seed")
    torch.manual_seed(1)
    ppmi_vectors(*counts, vocab_size=40, width=8)
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's generator state should be left as it was"


CONFIG = dict(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
              max_position_embeddings=32)


def test_the_distributional_initialisation_starts_word_embeddings_from_the_vectors():
    ids, starts = corpus_of_two_families()
    counts = cooccurrence_counts(ids, starts, 40, SPECIALS)
    torch.manual_seed(0)
    bert = BertForMaskedLM(BertConfig(**CONFIG))
    before = bert.bert.embeddings.word_embeddings.weight.clone()
    initialise(bert, "distributional", np.bincount(ids, minlength=40), counts)
    words = bert.bert.embeddings.word_embeddings.weight
    norms = words[10:30].norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, WORD_VECTOR_SCALE * math.sqrt(16)),
                               msg="each seen word's vector should have norm WORD_VECTOR_SCALE * sqrt(D)")
    assert torch.equal(words[30:], before[30:]) and torch.equal(words[:4], before[:4]), \
        "tokens without co-occurrences should keep BERT's random rows"
    expected = ppmi_vectors(*counts, vocab_size=40, width=16)[10:30]
    cosine = torch.nn.functional.cosine_similarity(words[10:30], expected, dim=1)
    torch.testing.assert_close(cosine, torch.ones_like(cosine), msg="rows should point along the PPMI vectors")


def test_the_distributional_initialisation_needs_the_counts():
    with pytest.raises(ConfigError, match="co-occurrence counts"):
        initialise(BertForMaskedLM(BertConfig(**CONFIG)), "distributional", np.ones(40, dtype=np.int64))
