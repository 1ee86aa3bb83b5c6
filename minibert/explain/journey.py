"""The journey of one input through BERT, as numbers a learner can read: `explain(loaded, text, pair)`.

    from minibert.explain.journey import explain
    from minibert.explain.loading import load_for_explain
    from minibert.explain.report import render_text
    loaded = load_for_explain("path/to/checkpoint")            # the model class that uses every head it carries
    journey = explain(loaded, "the capital of france is [MASK].")
    print(render_text(journey))

Everything here is derived from a `Trace` (trace.py), the values the model itself computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from minibert.config import BertConfig
from minibert.errors import InputError
from minibert.explain.heads import HeadReadout, read_heads
from minibert.explain.loading import LoadedModel
from minibert.explain.trace import Trace, run_trace
from minibert.tokenizer import BertTokenizer


# -- what explain reports -------------------------------------------------------------------------------------------
@dataclass
class Piece:
    text: str  # the WordPiece token ("##ization" continues a word)
    id: int
    segment: int  # 0 = sentence A, 1 = sentence B
    position: int


@dataclass
class EmbeddingNorms:
    """L2 norm per token of each embedding, their sum, and the sum after LayerNorm."""
    word: list[float]
    position: list[float]
    segment: list[float]
    total: list[float]
    normed: list[float]


@dataclass
class FeedForwardStats:
    """Over every token and every unit of the activation output."""
    units: int
    mean: float
    std: float
    share_positive: float  # GELU passes positive inputs almost unchanged and squashes negative ones toward 0
    max: float
    max_token: int  # where the largest activation is


@dataclass
class LayerJourney:
    qkv_shape: tuple[int, int, int, int]  # (B, H, T, Dh)
    entropy: list[float]  # per head, in bits, averaged over query tokens
    top_attended: list[list[tuple[int, float]]]  # per query token: (key token, probability averaged over heads)
    attention_residual_norm: list[float]  # per token: |x + attention|
    attention_normed_norm: list[float]  # per token, after attention_norm
    ffn_residual_norm: list[float]  # per token: |x + feed-forward|
    output_norm: list[float]  # per token, after ffn_norm
    feed_forward: FeedForwardStats | None  # None when the feed-forward did not run


@dataclass
class Journey:
    source: str
    model_class: str
    config: BertConfig
    text: str
    pair: str | None
    pieces: list[Piece]
    word_splits: list[tuple[str, list[str]]]  # words WordPiece cut into several pieces
    embeddings: EmbeddingNorms
    layers: list[LayerJourney]
    heads: HeadReadout
    masked_heads: list[tuple[int, int]]
    trace: Trace = field(repr=False)

    @property
    def tokens(self) -> list[str]:
        return [p.text for p in self.pieces]


# -- building it ----------------------------------------------------------------------------------------------------
def encode(tokenizer: BertTokenizer, text: str, pair: str | None, max_tokens: int) -> tuple[dict, list]:
    """The model's inputs for one text (or pair), never truncated: a text that does not fit is an error."""
    if not text.strip() or (pair is not None and not pair.strip()):
        raise InputError("the text (and --pair, when given) must not be empty")
    batch = tokenizer([text], None if pair is None else [pair], truncation=False)
    tokens = batch["input_ids"].shape[1]
    if tokens > max_tokens:
        raise InputError(f"the text{' pair' if pair is not None else ''} is {tokens} WordPiece tokens; "
                         f"this model takes at most {max_tokens}")
    encoding = tokenizer.backend.encode(text, pair) if pair is not None else tokenizer.backend.encode(text)
    return batch, encoding


def _word_splits(encoding, text: str, pair: str | None) -> list[tuple[str, list[str]]]:
    """Words that became more than one piece, with their pieces ("tokenization" -> token, ##ization)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (word, sequence) in enumerate(zip(encoding.word_ids, encoding.sequence_ids)):
        if word is not None:
            groups.setdefault((sequence, word), []).append(index)
    splits = []
    for (sequence, _), indices in groups.items():
        if len(indices) > 1:
            source = text if sequence == 0 else pair
            word = source[encoding.offsets[indices[0]][0]:encoding.offsets[indices[-1]][1]]
            splits.append((word, [encoding.tokens[i] for i in indices]))
    return splits


def _norms(x: Tensor | None, tokens: int) -> list[float]:
    """L2 norm per token, (T, D) -> (T,); NaN where the value was not computed."""
    return [math.nan] * tokens if x is None else x.float().norm(dim=-1).tolist()


def attention_entropy(probs: Tensor) -> list[float]:
    """Per head, in bits, averaged over query tokens: 0 = all attention on one token, log2(T) = spread evenly."""
    p = probs.double()  # (H, T, T)
    per_query = -(p * torch.log2(p.clamp_min(1e-30))).sum(-1)  # (H, T, T) -> (H, T)
    return per_query.mean(-1).tolist()


def top_attended(probs: Tensor, n: int) -> list[list[tuple[int, float]]]:
    """For each query token, the n key tokens it attends to most, averaged over heads."""
    mean = probs.float().mean(0)  # (H, T, T) -> (T, T)
    top = mean.topk(min(n, mean.shape[-1]), dim=-1)
    return [list(zip(i.tolist(), p.tolist())) for p, i in zip(top.values, top.indices)]


def _feed_forward_stats(activation: Tensor | None) -> FeedForwardStats | None:
    if activation is None:
        return None
    a = activation.float()  # (T, 4D)
    flat_max = int(a.argmax())
    return FeedForwardStats(units=a.shape[-1], mean=float(a.mean()), std=float(a.std()),
                            share_positive=float((a > 0).float().mean()), max=float(a.max()),
                            max_token=flat_max // a.shape[-1])


def _layer_journey(layer, top_n: int) -> LayerJourney:
    heads, tokens, head_size = layer.query.shape
    return LayerJourney(
        qkv_shape=(1, heads, tokens, head_size), entropy=attention_entropy(layer.attention),
        top_attended=top_attended(layer.attention, top_n),
        attention_residual_norm=_norms(layer.attention_residual, tokens),
        attention_normed_norm=_norms(layer.attention_normed, tokens),
        ffn_residual_norm=_norms(layer.ffn_residual, tokens), output_norm=_norms(layer.output, tokens),
        feed_forward=_feed_forward_stats(layer.ffn_activation))


def explain(loaded: LoadedModel, text: str, pair: str | None = None, top_k: int = 5, top_attended_n: int = 3,
            mask_heads: Sequence[tuple[int, int]] = ()) -> Journey:
    """Run `text` (and `pair`) through the model once and gather every stage. mask_heads: (layer, head) pairs,
    from 0, silenced for this run (see trace.masked_heads)."""
    model, tokenizer = loaded.model, loaded.tokenizer
    config = model.config
    max_tokens = min(config.max_position_embeddings, tokenizer.model_max_length)
    batch, encoding = encode(tokenizer, text, pair, max_tokens)
    device = model.device
    trace = run_trace(model, batch["input_ids"].to(device), batch["token_type_ids"].to(device), mask_heads)
    ids, segments = batch["input_ids"][0].tolist(), batch["token_type_ids"][0].tolist()
    pieces = [Piece(token, i, s, p) for p, (token, i, s) in
              enumerate(zip(tokenizer.convert_ids_to_tokens(ids), ids, segments))]
    tokens = len(ids)
    embeddings = EmbeddingNorms(*(_norms(x, tokens) for x in (trace.word, trace.position, trace.segment,
                                                              trace.embedding_sum, trace.embeddings)))
    return Journey(source=loaded.source, model_class=type(model).__name__, config=config, text=text, pair=pair,
                   pieces=pieces, word_splits=_word_splits(encoding, text, pair), embeddings=embeddings,
                   layers=[_layer_journey(layer, top_attended_n) for layer in trace.layers],
                   heads=read_heads(loaded, trace, ids, tokenizer, top_k), masked_heads=list(mask_heads), trace=trace)


def uniform_entropy(tokens: int) -> float:
    """The entropy of attention spread evenly over `tokens` keys, in bits: the ceiling of attention_entropy."""
    return math.log2(tokens)
