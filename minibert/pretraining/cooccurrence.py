"""Word vectors from how often tokens occur near each other in the training text: the distributional step that
comes before any network is trained.

"You shall know a word by the company it keeps" (Firth 1957). Count, over the prepared training examples, how
often each pair of tokens occurs within `window` positions of each other (a pair d apart counts 1/d, as in
word2vec's and GloVe's windows); weigh the counts by positive pointwise mutual information with the context
distribution smoothed by 0.75 (PPMI, Levy, Goldberg & Dagan 2015, "Improving Distributional Similarity with
Lessons Learned from Word Embeddings"); and keep the top `width` singular directions of that matrix, each token's
row scaled by the square root of the singular values (their "eigenvalue weighting" p = 0.5). On the 25,000 IMDB
reviews this takes about a minute on one core and puts "great" next to "wonderful", "excellent" and "superb",
and "terrible" next to "horrible" and "awful" (docs/pretraining-recipe.md).

`minibert.pretraining.initialisation` starts the word embeddings from these vectors (the `distributional`
initialisation), so that masked-LM pretraining and fine-tuning begin from a vocabulary already arranged by
meaning, which a small model on a CPU budget does not reach by masked-LM training alone.
"""

from __future__ import annotations

import numpy as np
import torch

WINDOW = 5  # tokens on each side
CONTEXT_SMOOTHING = 0.75  # context counts raised to this power (Levy et al. 2015, section 3.1)
MAX_CONTEXTS = 8192  # context columns kept, the most frequent tokens: bounds memory at V x 8192 floats


def cooccurrence_counts(token_ids: np.ndarray, example_starts: np.ndarray, vocab_size: int,
                        ignored_ids: list[int], window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Weighted co-occurrence counts of one stretch of examples.

    token_ids (N,): the examples' ids end to end; example_starts (E + 1,): where each example starts, then N.
    Pairs never cross an example, and `ignored_ids` ([CLS], [SEP], [PAD], [MASK]) take part in no pair. Returns
    (keys, weights): the pairs as `row * vocab_size + column`, each pair once, in both orders (the matrix is
    symmetric), and their summed weights 1/distance."""
    example = np.repeat(np.arange(len(example_starts) - 1), np.diff(example_starts))  # (N,) example of each token
    kept = ~np.isin(token_ids, ignored_ids)
    keys, weights = [], []
    for distance in range(1, window + 1):
        left, right = token_ids[:-distance], token_ids[distance:]  # (N - d,) each
        pair = kept[:-distance] & kept[distance:] & (example[:-distance] == example[distance:])
        a, b = left[pair].astype(np.int64), right[pair].astype(np.int64)
        keys += [a * vocab_size + b, b * vocab_size + a]
        weights += [np.full(2 * len(a), 1.0 / distance, dtype=np.float32)]
    return sum_by_key(np.concatenate(keys), np.concatenate(weights))


def sum_by_key(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique keys, the sum of the weights of each)."""
    if not len(keys):
        return keys, weights
    order = np.argsort(keys, kind="stable")
    keys, weights = keys[order], weights[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.add.reduceat(weights, starts)


def ppmi_vectors(keys: np.ndarray, weights: np.ndarray, vocab_size: int, width: int, seed: int = 0,
                 max_contexts: int = MAX_CONTEXTS) -> torch.Tensor:
    """(V, width) vectors from co-occurrence counts: PPMI against the `max_contexts` most frequent context tokens,
    then a truncated SVD, U sqrt(S). Rows of tokens that co-occur with nothing are zero."""
    rows, columns = keys // vocab_size, keys % vocab_size
    row_totals = np.bincount(rows, weights, minlength=vocab_size)  # (V,)
    contexts = np.argsort(-row_totals, kind="stable")[:min(max_contexts, vocab_size)]  # (C,) the most frequent
    column_of = np.full(vocab_size, -1)
    column_of[contexts] = np.arange(len(contexts))
    smoothed = row_totals[contexts] ** CONTEXT_SMOOTHING
    context_share = smoothed / smoothed.sum()  # (C,) P_0.75(context)
    total = weights.sum()
    kept = column_of[columns] >= 0
    rows, columns, counts = rows[kept], column_of[columns[kept]], weights[kept]
    pmi = np.log(counts * total) - np.log(row_totals[rows]) - np.log(context_share[columns] * total)
    positive = pmi > 0
    matrix = torch.zeros(vocab_size, len(contexts))  # (V, C)
    matrix[torch.from_numpy(rows[positive]), torch.from_numpy(columns[positive])] = \
        torch.from_numpy(pmi[positive].astype(np.float32))
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # svd_lowrank draws its random projection from torch's generator
    try:
        u, s, _ = torch.svd_lowrank(matrix, q=min(width + 16, *matrix.shape), niter=4)  # (V, q), (q,)
    finally:
        torch.random.set_rng_state(generator_state)
    vectors = torch.zeros(vocab_size, width)
    kept_width = min(width, s.numel())
    vectors[:, :kept_width] = u[:, :kept_width] * s[:kept_width].sqrt()  # (V, width)
    vectors[matrix.count_nonzero(dim=1) == 0] = 0.0  # exactly: the SVD leaves rounding noise in empty rows
    return vectors
