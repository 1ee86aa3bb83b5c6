"""The journey of one input through BERT, as numbers a learner can read: `explain(model, tokenizer, text)`.

    from minibert.explain.journey import explain, load_for_explain
    loaded = load_for_explain("path/to/checkpoint")            # the model class that uses every head it carries
    journey = explain(loaded, "the capital of france is [MASK].")
    print(render_text(journey))                                # minibert.explain.report

Everything here is derived from a `Trace` (trace.py), the values the model itself computed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from minibert import model as M
from minibert.checkpoint import find_weights, read_weights
from minibert.config import BertConfig
from minibert.errors import InputError
from minibert.explain.trace import Trace, code_location, encoder_of, run_trace
from minibert.hub import resolve
from minibert.parity import head_class_for
from minibert.tasks.kinds import read_label_map
from minibert.tokenizer import BertTokenizer


# -- loading ------------------------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    source: str
    model: M.BertPreTrainedModel
    tokenizer: BertTokenizer
    labels: list[str] | None  # class or tag names in id order, for classification heads
    untrained: list[str]  # parameters the checkpoint did not hold (their part of the model is not shown)


def load_for_explain(name_or_path: str | os.PathLike) -> LoadedModel:
    """Load a checkpoint into the class that uses every head it carries (the choice `minibert parity` makes)."""
    folder = resolve(name_or_path)
    names = list(read_weights(find_weights(folder)))
    config = BertConfig.from_json(folder / "config.json")
    class_name = head_class_for(names, config.extra.get("architectures"))
    model = getattr(M, class_name).from_pretrained(folder).eval()
    labels = None
    if hasattr(model, "classifier"):
        labels = (read_label_map(folder) or {}).get("labels") or list(model.config.labels().values())
    return LoadedModel(str(name_or_path), model, BertTokenizer.from_pretrained(folder), labels,
                       list(model.load_report.newly_initialised))


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
class HeadReadout:
    """What each head the checkpoint carries says; `absent` says which it does not carry, in words."""
    pooled_norm: float | None = None
    mlm: list[tuple[int, list[tuple[str, float]]]] | None = None  # per [MASK]: (position, top-k (token, p))
    nsp_is_next: float | None = None  # P(B follows A), label 0 of the NSP head
    classes: list[tuple[str, float]] | None = None  # (label, probability), in label order
    score: float | None = None  # a regression head's output
    token_labels: list[tuple[str, float]] | None = None  # per token: (best label, its probability)
    answer: tuple[int, int, float] | None = None  # QA: best (start, end) and P(start) * P(end)
    computed_by: dict[str, str] = field(default_factory=dict)  # head -> the function that computes it
    absent: list[str] = field(default_factory=list)


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


# -- the heads ------------------------------------------------------------------------------------------------------
def _trained(loaded: LoadedModel, prefix: str) -> bool:
    return not any(name.startswith(prefix) for name in loaded.untrained)


def read_heads(loaded: LoadedModel, trace: Trace, ids: list[int], tokenizer: BertTokenizer,
               top_k: int) -> HeadReadout:
    model, out = loaded.model, trace.output
    readout = HeadReadout()
    pooler_prefix = "pooler." if isinstance(model, M.BertModel) else "bert.pooler."
    if trace.pooled is not None and _trained(loaded, pooler_prefix):
        readout.pooled_norm = float(trace.pooled.float().norm())
        readout.computed_by["pooler"] = code_location(M.Pooler.forward)
    elif encoder_of(model).pooler is None:
        readout.absent.append(f"no pooler ({type(model).__name__} has none: nothing reads [CLS] alone)")
    else:
        readout.absent.append("no pooler weights in the checkpoint (the pooler would be random: not shown)")

    if hasattr(model, "mlm"):
        logits = out.prediction_logits if isinstance(out, M.PreTrainingOutput) else out.logits
        masks = [i for i, token in enumerate(ids) if token == tokenizer.mask_id]
        readout.mlm = []
        for position in masks:
            probs = logits[0, position].float().softmax(-1)  # (V,)
            top = probs.topk(min(top_k, probs.numel()))
            readout.mlm.append((position, list(zip(tokenizer.convert_ids_to_tokens(top.indices.tolist()),
                                                   top.values.tolist()))))
        readout.computed_by["mlm"] = code_location(M.MaskedLMHead.forward)
    else:
        readout.absent.append("no masked-LM head (the checkpoint has no cls.predictions.* tensors): "
                              "no [MASK] predictions")

    if hasattr(model, "nsp"):
        logits = out.seq_relationship_logits if isinstance(out, M.PreTrainingOutput) else out.logits
        readout.nsp_is_next = float(logits[0].float().softmax(-1)[0])
        readout.computed_by["nsp"] = code_location(type(model).forward)
    else:
        readout.absent.append("no next-sentence head (no cls.seq_relationship.* tensors)")

    if isinstance(model, M.BertForSequenceClassification):
        logits = out.logits[0].float()  # (C,)
        if model.config.num_labels == 1 or model.config.problem_type == "regression":
            readout.score = float(logits[0])
        elif model.config.problem_type == "multi_label_classification":
            readout.classes = list(zip(loaded.labels, logits.sigmoid().tolist()))
        else:
            readout.classes = list(zip(loaded.labels, logits.softmax(-1).tolist()))
        readout.computed_by["classifier"] = code_location(type(model).forward)
    elif isinstance(model, M.BertForTokenClassification):
        best = out.logits[0].float().softmax(-1).max(-1)  # (T, C) -> (T,)
        readout.token_labels = [(loaded.labels[i], p) for p, i in zip(best.values.tolist(), best.indices.tolist())]
        readout.computed_by["classifier"] = code_location(type(model).forward)
    elif isinstance(model, M.BertForQuestionAnswering):
        start, end = out.start_logits[0].float().softmax(-1), out.end_logits[0].float().softmax(-1)  # (T,)
        scores = torch.triu(start[:, None] * end[None, :])  # (T, T): P(start) * P(end), end >= start
        best = int(scores.argmax())
        tokens = scores.shape[0]
        readout.answer = (best // tokens, best % tokens, float(scores.flatten()[best]))
        readout.computed_by["qa"] = code_location(type(model).forward)
    else:
        readout.absent.append("no fine-tuned head (classifier, tagger or QA)")
    return readout


def uniform_entropy(tokens: int) -> float:
    """The entropy of attention spread evenly over `tokens` keys, in bits: the ceiling of attention_entropy."""
    return math.log2(tokens)


def parse_head(spec: str) -> tuple[int, int]:
    """'3:5', layer 3 and head 5 counted from 1 as explain prints them -> (2, 4), the indices from 0."""
    try:
        layer, head = (int(part) for part in spec.split(":"))
    except ValueError:
        raise InputError(f"--mask-head {spec!r}: expected LAYER:HEAD, e.g. 3:5 (both counted from 1)") from None
    if layer < 1 or head < 1:
        raise InputError(f"--mask-head {spec!r}: layers and heads count from 1")
    return layer - 1, head - 1
