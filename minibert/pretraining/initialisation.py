"""Where a BERT pretrained from scratch starts. Every scheme leaves a plain BERT (the same modules, the same
checkpoint keys, trained the same way); only the starting values differ.

"bert": BERT's own initialisation (model.py `post_init`): normal(0, 0.02) weights, zero biases.

"local-attention": BERT's, then three changes that let a small model use context within minutes instead of
hours (docs/pretraining-recipe.md measures each):

1. Position embeddings start as sinusoids ("Attention Is All You Need" §3.5) of amplitude POSITION_SCALE, so
   nearby positions start with similar vectors. (They stay a learned table.)
2. In every layer the key weights start equal to the query weights, so a score q_i·k_j = x_i Wᵀ W x_j starts as a
   multiple of the similarity x_i·x_j: each token attends to itself and, through the sinusoids, to its
   neighbours. Attention is local from the first step. This is a "mimetic" initialisation (Trockman & Kolter
   2023, "Mimetic Initialization of Self-Attention Layers"). Under BERT's initialisation attention starts
   uniform over the whole sequence, and a small model trained on a CPU was measured to stay at the unigram
   guess for thousands of steps before it learnt where to look.
3. The MLM output bias starts at the log frequency of each token in the training data, so the first steps are
   not spent learning the unigram distribution, which Adam's bounded steps make slow for a bias that must reach
   -10 or below for rare tokens ("initialise the last layer's bias to the base rates", Karpathy 2019, "A Recipe
   for Training Neural Networks").

"distributional": "local-attention", and a fourth change that makes pretraining pay off downstream:

4. The word embeddings start as distributional word vectors of the training text (minibert.pretraining.cooccurrence:
   co-occurrence counts, PPMI, truncated SVD; about a minute of CPU for 7 million tokens), each scaled to norm
   WORD_VECTOR_SCALE * sqrt(D). Masked-LM training alone moves a small model's embeddings little in a CPU budget:
   a logistic regression on the mean of its word vectors tells positive from negative movie reviews no better
   than random vectors do; started from these, fine-tuning starts from a vocabulary arranged by meaning
   (docs/pretraining-recipe.md measures the payoff). Tokens that occur in no pair keep BERT's random rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from minibert.errors import ConfigError
from minibert.pretraining.cooccurrence import ppmi_vectors

POSITION_SCALE = 0.1  # sinusoid amplitude: 5x the std of BERT's other embeddings (0.02)
WORD_VECTOR_SCALE = 0.1  # a distributional word vector's norm over sqrt(D): 5x a BERT-initialised row's
SELF_SCORE = 10.0  # a token's attention score for itself at the start, as softmax sees it


@dataclass(frozen=True)
class InitScheme:
    """Which of the three changes to BERT's initialisation to make (each is measured on its own in the
    pretraining ablation)."""
    sinusoidal_positions: bool = False
    query_equals_key: bool = False
    unigram_bias: bool = False
    distributional_embeddings: bool = False


INITS = {"bert": InitScheme(), "local-attention": InitScheme(True, True, True),
         "distributional": InitScheme(True, True, True, True)}


def sinusoids(positions: int, width: int) -> torch.Tensor:
    """(positions, width): sin in even columns, cos in odd ones, wavelengths from 2π to 10000·2π."""
    position = torch.arange(positions, dtype=torch.float32)[:, None]  # (P, 1)
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=torch.float32) / width)  # (W/2,)
    table = torch.zeros(positions, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : width // 2]
    return table


def init_scheme(init: str | InitScheme) -> InitScheme:
    if isinstance(init, InitScheme):
        return init
    if init not in INITS:
        raise ConfigError(f"unknown initialisation {init!r}; expected one of {', '.join(INITS)}")
    return INITS[init]


@torch.no_grad()
def initialise(model: nn.Module, init: str | InitScheme, token_counts: np.ndarray | None = None,
               cooccurrence: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Apply `init` (a name from INITS, or a scheme) to a freshly built BertForPreTraining or BertForMaskedLM.
    Seed torch first: the query/key draws use its generator. `token_counts` (one count per vocabulary id,
    specials excluded) is needed for the unigram bias, `cooccurrence` (PretrainingDataset.cooccurrence_counts)
    for the distributional word vectors."""
    scheme = init_scheme(init)
    config, bert = model.config, model.bert
    if scheme.sinusoidal_positions:
        positions = bert.embeddings.position_embeddings.weight  # (P, D)
        positions.copy_(POSITION_SCALE * sinusoids(*positions.shape))
    if scheme.query_equals_key:
        # Per head W is (Dh, D): E[WᵀW] = Dh σ² I, and a LayerNorm output has |x|² = D, so the self-score
        # x Wᵀ W x / sqrt(Dh) is about sqrt(Dh) σ² D. (D 128, Dh 64: σ ≈ 0.1.)
        std = math.sqrt(SELF_SCORE / (math.sqrt(config.head_size) * config.hidden_size))
        for layer in bert.layers:
            layer.attention.query.weight.normal_(0.0, std)
            layer.attention.key.weight.copy_(layer.attention.query.weight)
    if scheme.unigram_bias:
        if token_counts is None:
            raise ConfigError("the unigram bias needs the training data's token counts")
        model.mlm.bias.copy_(unigram_log_frequencies(token_counts))
    if scheme.distributional_embeddings:
        if cooccurrence is None:
            raise ConfigError("the distributional word vectors need the training data's co-occurrence counts")
        words = bert.embeddings.word_embeddings.weight  # (V, D)
        vectors = ppmi_vectors(*cooccurrence, vocab_size=words.shape[0], width=words.shape[1])  # (V, D)
        norms = vectors.norm(dim=1, keepdim=True)  # (V, 1)
        seen = norms.squeeze(1) > 0
        words[seen] = vectors[seen] / norms[seen] * WORD_VECTOR_SCALE * math.sqrt(words.shape[1])


def unigram_log_frequencies(token_counts: np.ndarray) -> torch.Tensor:
    """log p(token), add-one smoothed so a token never seen gets a finite, very low bias."""
    counts = np.asarray(token_counts, dtype=np.float64) + 1.0
    return torch.from_numpy(np.log(counts / counts.sum())).float()
