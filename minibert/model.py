"""BERT (Devlin et al., 2018, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding"),
read top to bottom in the order it computes:

    embeddings -> N x [self-attention -> add & norm -> feed-forward -> add & norm] -> pooler -> heads

Sections: embeddings, attention, feed-forward, the encoder layer, the shared base (weight init, loading and
saving), the encoder, the pooler, outputs, the losses (one function per head), then the heads: pretraining (masked
LM, next sentence) and fine-tuning (sequence, token, question answering).

Shapes use one letter set: B batch, T tokens, N real (unpadded) tokens, H heads, D hidden, Dh head size,
V vocabulary, M masked positions, C labels.

Two execution choices never change the result beyond float rounding, and tests hold them to that:
- `config.attn_implementation`: "eager" spells attention out (softmax of masked scores); "sdpa" calls
  `torch.nn.functional.scaled_dot_product_attention`, PyTorch's fused kernel.
- `config.unpad`: when a batch has padding, the dense layers run on the N real tokens only. That machinery lives
  in speed/unpadding.py; here a `TokenLayout` is handed from layer to layer, and attention asks it for the padded
  (B, T) layout (`unpack`), the padding mask (`additive_mask`) and the real tokens back (`pack`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minibert.activations import ACTIVATIONS
from minibert.config import BertConfig
from minibert.errors import InputError
from minibert.model_output import ModelOutput
from minibert.speed.unpadding import TokenLayout


# ----------------------------------------------------------------------------------------------------------------
# Embeddings (BERT §3, "Input/Output Representations", Figure 2): token + position + segment, then LayerNorm.
# ----------------------------------------------------------------------------------------------------------------
class Embeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, D)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.norm(x))


# ----------------------------------------------------------------------------------------------------------------
# Multi-head self-attention ("Attention Is All You Need" §3.2): softmax(Q K^T / sqrt(Dh)) V per head.
# ----------------------------------------------------------------------------------------------------------------
def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float, implementation: str,
              return_probs: bool = False, head_size: int | None = None) -> tuple[Tensor, Tensor | None]:
    """q, k, v: (B, H, T, Dh); mask: (B, 1, 1, T) additive or None. Returns (B, H, T, Dh) and the probabilities
    (B, H, T, T) when asked (only the reference path computes them). head_size (Dh) is read from q unless given;
    callers that know it pass it, so that an exported (traced) graph divides by a constant, not by a shape."""
    if implementation == "sdpa" and not return_probs:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout), None
    scores = torch.matmul(q, k.transpose(-1, -2))  # (B, H, T, Dh) @ (B, H, Dh, T) -> (B, H, T, T)
    head_size = head_size or q.shape[-1]
    if torch.jit.is_tracing():
        # ONNX export: the paper's division by sqrt(Dh), the only form in which ONNX Runtime's attention fusion
        # tells the scaling from the mask's multiplication.
        scores = scores / math.sqrt(head_size)
    else:
        # transformers multiplies by Dh^-0.5; so do we, so that float32 results match it bit for bit (the two
        # forms round differently unless Dh is a power of 4, e.g. 64 but not 32).
        scores = scores * head_size ** -0.5
    if mask is not None:
        scores = scores + mask
    probs = scores.softmax(dim=-1)
    out = torch.matmul(F.dropout(probs, dropout, training=dropout > 0), v)  # (B, H, T, T) @ (B, H, T, Dh)
    return out, probs


class SelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        d = config.hidden_size
        self.heads, self.head_size = config.num_attention_heads, config.head_size
        self.query, self.key, self.value, self.output = (nn.Linear(d, d) for _ in range(4))
        self.dropout_prob = config.attention_probs_dropout_prob  # on the attention probabilities, while training
        self.implementation = config.attn_implementation

    def split_heads(self, x: Tensor, layout: TokenLayout) -> Tensor:
        x = layout.unpack(x)  # (N, D) -> (B, T, D)
        return x.view(layout.batch, layout.tokens, self.heads, self.head_size).transpose(1, 2)  # -> (B, H, T, Dh)

    def forward(self, x: Tensor, layout: TokenLayout, return_probs: bool = False) -> tuple[Tensor, Tensor | None]:
        q, k, v = (self.split_heads(proj(x), layout) for proj in (self.query, self.key, self.value))
        mask = layout.additive_mask(q.dtype)
        dropout = self.dropout_prob if self.training else 0.0
        out, probs = attention(q, k, v, mask, dropout, self.implementation, return_probs, self.head_size)
        out = out.transpose(1, 2).reshape(layout.batch, layout.tokens, -1)  # (B, H, T, Dh) -> (B, T, D)
        return self.output(layout.pack(out)), probs  # (B, T, D) -> (N, D)


# ----------------------------------------------------------------------------------------------------------------
# Position-wise feed-forward ("Attention Is All You Need" §3.3): dense -> GELU -> dense, applied to each token.
# BERT uses the exact erf GELU (Hendrycks & Gimpel 2016); `hidden_act` names a function of activations.py.
# ----------------------------------------------------------------------------------------------------------------
class FeedForward(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.activation(self.intermediate(x)))  # (N, D) -> (N, 4D) -> (N, D)


# ----------------------------------------------------------------------------------------------------------------
# Encoder layer ("Attention Is All You Need" §3.1): post-norm residuals, LayerNorm(x + Dropout(Sublayer(x))).
# ----------------------------------------------------------------------------------------------------------------
class EncoderLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, layout: TokenLayout, return_probs: bool = False) -> tuple[Tensor, Tensor | None]:
        attended, probs = self.attention(x, layout, return_probs)
        x = self.attention_norm(x + self.dropout(attended))
        x = self.ffn_norm(x + self.dropout(self.ffn(x)))
        return x, probs


# ----------------------------------------------------------------------------------------------------------------
# The shared base: weight init (normal(0, initializer_range) as transformers does; the original TF code
# truncates it at two standard deviations), loading and saving.
# ----------------------------------------------------------------------------------------------------------------
class BertPreTrainedModel(nn.Module):
    config: BertConfig
    # Checkpoint tensors this model does not store, each equal to the tensor named beside it (Hugging Face names,
    # relative to the encoder or the model): the loader checks and sets them aside, the saver leaves them out.
    tied_weights: dict[str, str] = {}

    def post_init(self) -> None:
        """Initialise the weights this model's own __init__ added, once, as its last step. An encoder built
        inside a head (`self.bert`) initialised itself when it was built, so it is left as it is."""
        inner = {id(module) for child in self.children() if isinstance(child, BertPreTrainedModel)
                 for module in child.modules()}
        for module in self.modules():
            if id(module) not in inner:
                self._init_module(module)

    def _init_module(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, MaskedLMHead):
            nn.init.zeros_(module.bias)  # the decoder's bias; its weight is the word embeddings

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs):
        """Load a Hugging Face BERT checkpoint (local folder, weights file, or hub id). See minibert.checkpoint."""
        from minibert.checkpoint import load_pretrained
        return load_pretrained(cls, name_or_path, **kwargs)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write config.json + model.safetensors with Hugging Face names, so transformers loads it."""
        from minibert.checkpoint import save_pretrained
        save_pretrained(self, folder)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameter count, with transformers' options (its Trainer passes exclude_embeddings to count FLOPs)."""
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        return sum(p.numel() for p in self.parameters() if (p.requires_grad or not only_trainable)
                   and not (exclude_embeddings and id(p) in embeddings))


# ----------------------------------------------------------------------------------------------------------------
# The encoder: embeddings, N layers, pooler (BERT §3, Figure 1).
# ----------------------------------------------------------------------------------------------------------------
class BertModel(BertPreTrainedModel):
    def __init__(self, config: BertConfig, with_pooler: bool = True):
        """with_pooler=False for heads that never read [CLS] (masked LM, token classification, QA), as in
        transformers, so that checkpoints of those heads have exactly the same tensors."""
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Pooler(config) if with_pooler else None
        self.post_init()

    def check_inputs(self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None,
                     position_ids: Tensor | None) -> None:
        """Turn the silent or cryptic failures of bad inputs into one clear message."""
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return
        c = self.config
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}")
        batch, tokens = input_ids.shape
        if position_ids is None and tokens > c.max_position_embeddings:
            raise InputError(f"input_ids has {tokens} tokens, more than max_position_embeddings "
                             f"({c.max_position_embeddings}); truncate the input")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids),
                        ("position_ids", position_ids)):
            if t is not None and tuple(t.shape) != (batch, tokens) and not (name == "position_ids" and
                                                                           tuple(t.shape) == (1, tokens)):
                raise InputError(f"{name} has shape {tuple(t.shape)}, expected {(batch, tokens)} like input_ids")
        for name, t, limit in (("input_ids", input_ids, c.vocab_size), ("token_type_ids", token_type_ids,
                               c.type_vocab_size), ("position_ids", position_ids, c.max_position_embeddings)):
            if t is not None and t.numel() and (int(t.max()) >= limit or int(t.min()) < 0):
                raise InputError(f"{name} holds {int(t.max()) if int(t.max()) >= limit else int(t.min())}, "
                                 f"outside [0, {limit}) set by the config")

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                position_ids: Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, unpad: bool | None = None) -> EncoderOutput:
        """input_ids (B, T) token ids; attention_mask (B, T), 1 on real tokens and 0 on padding (None: no
        padding); token_type_ids (B, T), 0 on segment A and 1 on B (None: all 0); position_ids (B, T) or (1, T)
        (None: 0..T-1). output_hidden_states / output_attentions: also return every layer's output / attention
        probabilities. unpad overrides config.unpad for this call (a head whose loss reads padded positions
        needs them). Every head's forward takes the same first arguments."""
        self.check_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        batch, tokens = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if position_ids is None:
            # (T,) -> (1, T) -> (B, T), a view, expanded as ONNX Runtime's embedding fusion expects
            position_ids = torch.arange(tokens, device=input_ids.device)[None, :].expand_as(input_ids)
        layout = TokenLayout(attention_mask, batch, tokens, unpad=self.config.unpad if unpad is None else unpad)

        x = layout.pack(self.embeddings(input_ids, token_type_ids, position_ids))  # (B, T, D) -> (N, D)
        hidden_states, attentions = [layout.unpack(x)] if output_hidden_states else None, []
        for layer in self.layers:
            x, probs = layer(x, layout, return_probs=output_attentions)
            if output_hidden_states:
                hidden_states.append(layout.unpack(x))
            if output_attentions:
                attentions.append(probs)

        last = layout.unpack(x)  # (N, D) -> (B, T, D)
        return EncoderOutput(last_hidden_state=last, pooler_output=self.pooler(last) if self.pooler else None,
                             hidden_states=tuple(hidden_states) if output_hidden_states else None,
                             attentions=tuple(attentions) if output_attentions else None)

    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Grow or shrink the vocabulary, keeping the rows both sizes share; new rows get BERT's init."""
        old = self.embeddings.word_embeddings
        new = nn.Embedding(vocab_size, old.embedding_dim, padding_idx=old.padding_idx,
                           device=old.weight.device, dtype=old.weight.dtype)
        nn.init.normal_(new.weight, 0.0, self.config.initializer_range)
        kept = min(vocab_size, old.num_embeddings)
        with torch.no_grad():
            new.weight[:kept] = old.weight[:kept]
        self.embeddings.word_embeddings = new
        self.config.vocab_size = vocab_size


# ----------------------------------------------------------------------------------------------------------------
# Pooler (BERT §3, "the final hidden vector corresponding to [CLS]"): tanh(dense(h_[CLS])).
# ----------------------------------------------------------------------------------------------------------------
class Pooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, T, D) -> (B, D)


# ----------------------------------------------------------------------------------------------------------------
# Outputs. Field names and order match transformers (minibert's own fields come last), and each output behaves like
# transformers' ModelOutput (model_output.py): out.logits, out["logits"], out[0], out.to_tuple(), loss first.
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class EncoderOutput(ModelOutput):
    last_hidden_state: Tensor  # (B, T, D); zeros at padded positions when unpadded
    pooler_output: Tensor | None  # (B, D); None without a pooler
    hidden_states: tuple[Tensor, ...] | None = None  # embeddings + each layer, (B, T, D) each
    attentions: tuple[Tensor, ...] | None = None  # each layer, (B, H, T, T)


@dataclass
class PreTrainingOutput(ModelOutput):
    loss: Tensor | None = None  # MLM + NSP
    prediction_logits: Tensor | None = None  # (B, T, V); None when masked_only
    seq_relationship_logits: Tensor | None = None  # (B, 2)
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    masked_logits: Tensor | None = None  # (M, V): logits at the positions where labels != IGNORE_INDEX, row-major
    mlm_loss: Tensor | None = None
    nsp_loss: Tensor | None = None


@dataclass
class ClassifierOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None  # (B, C) per sequence, (B, T, C) per token, (B, T, V) for MLM
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    masked_logits: Tensor | None = None  # MLM with masked_only: (M, V)


@dataclass
class QuestionAnsweringOutput(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor | None = None  # (B, T)
    end_logits: Tensor | None = None  # (B, T)
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------
# Losses, one function per head. `reduction="mean"` is the head's own loss (what transformers reports);
# `reduction="sum"` is what a trainer adds up over the micro-batches of a step before dividing by the step's count
# (minibert.training.task explains why). Losses are computed in at least float32, also under bf16/fp16 autocast.
# ----------------------------------------------------------------------------------------------------------------
IGNORE_INDEX = -100  # a label no loss counts: unmasked positions (MLM), [CLS], [SEP], padding and ## pieces (tags)


def _upcast(logits: Tensor) -> Tensor:
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.to(torch.float32)


def masked_lm_loss(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of (..., V) logits against (...) labels, over the labels that are not IGNORE_INDEX: the
    (B, T, V) logits of every position, or the (M, V) logits of the masked positions alone (`masked_rows`)."""
    return F.cross_entropy(_upcast(logits).flatten(0, -2), labels.flatten(), reduction=reduction)


def next_sentence_loss(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of (B, 2) logits against (B,) labels: 0 when B follows A, 1 when B is random."""
    return F.cross_entropy(_upcast(logits), labels.flatten(), reduction=reduction)


def problem_type(config: BertConfig, labels: Tensor) -> str:
    """What a sequence head's labels mean, as transformers decides it: the config's problem_type, else regression
    for one label, single-label classification for integer labels, multi-label classification for float ones."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    return "single_label_classification" if labels.dtype in (torch.long, torch.int) else "multi_label_classification"


def sequence_classification_loss(logits: Tensor, labels: Tensor, config: BertConfig,
                                 reduction: str = "mean") -> Tensor:
    """(B, C) logits: mean squared error for regression ((B,) or (B, C) float labels), cross-entropy for class
    ids ((B,)), binary cross-entropy for multi-hot labels ((B, C) floats), per `problem_type`. The mean is over
    sequences for class ids, over every label value for the other two."""
    logits, problem = _upcast(logits), problem_type(config, labels)
    if problem == "regression":
        logits = logits.squeeze(-1) if config.num_labels == 1 else logits
        return F.mse_loss(logits, labels.to(logits.dtype).view(logits.shape), reduction=reduction)
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1), reduction=reduction)
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction=reduction)


def token_classification_loss(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of (B, T, C) logits against (B, T) labels, over the labels that are not IGNORE_INDEX."""
    return F.cross_entropy(_upcast(logits).flatten(0, 1), labels.flatten(), reduction=reduction)  # (B*T, C)


def answer_positions(positions: Tensor, tokens: int) -> Tensor:
    """(B,) answer start or end positions, clamped to T: a position outside the window (T or beyond, as
    transformers clamps it) is ignored by the loss."""
    return positions.flatten().clamp(0, tokens)


def question_answering_loss(start_logits: Tensor, end_logits: Tensor, start_positions: Tensor,
                            end_positions: Tensor, reduction: str = "mean") -> dict[str, Tensor]:
    """The QA head's loss is the mean of a start and an end cross-entropy over the (B, T) logits (a softmax over
    every position, padding included, as transformers'): returned as its two halves, {"start": half the start
    cross-entropy, "end": half the end one}, whose sum is the loss; each has its own count of answers in the
    window."""
    tokens = start_logits.shape[1]
    return {name: F.cross_entropy(_upcast(logits), answer_positions(positions, tokens), ignore_index=tokens,
                                  reduction=reduction) / 2
            for name, logits, positions in (("start", start_logits, start_positions),
                                            ("end", end_logits, end_positions))}


# ----------------------------------------------------------------------------------------------------------------
# Pretraining heads (BERT §3.1). Masked LM: predict the original token at masked positions, with the output
# projection tied to the input embeddings (Press & Wolf 2017). NSP: does segment B follow segment A?
# Every head's forward takes BertModel.forward's inputs first, then its labels (None: no loss).
# ----------------------------------------------------------------------------------------------------------------
class MaskedLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACTIVATIONS[config.hidden_act]
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        """The decoder has no weight of its own: it is handed the (V, D) embedding matrix, so the two are one
        tensor through loading, training and resizing."""
        h = self.norm(self.activation(self.dense(hidden)))  # (..., D)
        return F.linear(h, word_embeddings, self.bias)  # (..., D) -> (..., V)


def masked_rows(hidden: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Gather the hidden states and labels of masked positions: (B, T, D), (B, T) -> (M, D), (M,).
    Projecting only these onto the vocabulary skips ~85% of the largest matrix multiply of pretraining."""
    where = labels.flatten() != IGNORE_INDEX  # (B*T,)
    return hidden.flatten(0, 1)[where], labels.flatten()[where]  # (B*T, D) -> (M, D)


class _MaskedLMBase(BertPreTrainedModel):
    """Shared by BertForPreTraining and BertForMaskedLM: the tied MLM head and vocabulary resizing."""

    # The decoder checkpoints may store: its weight is the word-embedding matrix, its bias the head's own.
    tied_weights = {"cls.predictions.decoder.weight": "embeddings.word_embeddings.weight",
                    "cls.predictions.decoder.bias": "cls.predictions.bias"}

    def __init__(self, config: BertConfig, with_pooler: bool):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, with_pooler)
        self.mlm = MaskedLMHead(config)

    def resize_token_embeddings(self, vocab_size: int) -> None:
        self.bert.resize_token_embeddings(vocab_size)
        old_bias = self.mlm.bias.data
        bias = torch.zeros(vocab_size, dtype=old_bias.dtype, device=old_bias.device)
        kept = min(vocab_size, old_bias.numel())
        bias[:kept] = old_bias[:kept]
        self.mlm.bias = nn.Parameter(bias)

    def mlm_outputs(self, hidden: Tensor, labels: Tensor | None,
                    masked_only: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """(full (B, T, V) logits or None, masked (M, V) logits or None, loss or None)."""
        word_embeddings = self.bert.embeddings.word_embeddings.weight
        if masked_only and labels is not None:
            rows, targets = masked_rows(hidden, labels)
            masked_logits = self.mlm(rows, word_embeddings)  # (M, D) -> (M, V)
            return None, masked_logits, masked_lm_loss(masked_logits, targets)
        logits = self.mlm(hidden, word_embeddings)  # (B, T, D) -> (B, T, V)
        return logits, None, None if labels is None else masked_lm_loss(logits, labels)


class BertForPreTraining(_MaskedLMBase):
    def __init__(self, config: BertConfig):
        super().__init__(config, with_pooler=True)
        self.nsp = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                labels: Tensor | None = None, next_sentence_label: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False,
                masked_only: bool = False) -> PreTrainingOutput:
        """labels (B, T): the original token at masked positions, IGNORE_INDEX elsewhere; next_sentence_label
        (B,): 0 when B follows A, 1 when it is random. The loss is MLM + NSP when both are given.
        masked_only: with labels, project only masked positions (training); prediction_logits is then None and
        masked_logits holds (M, V). The loss is the same either way."""
        enc = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        logits, masked_logits, mlm_loss = self.mlm_outputs(enc.last_hidden_state, labels, masked_only)
        nsp_logits = self.nsp(enc.pooler_output)  # (B, D) -> (B, 2)
        nsp_loss = None if next_sentence_label is None else next_sentence_loss(nsp_logits, next_sentence_label)
        loss = None
        if mlm_loss is not None and nsp_loss is not None:
            loss = mlm_loss + nsp_loss
        return PreTrainingOutput(loss=loss, prediction_logits=logits, seq_relationship_logits=nsp_logits,
                                 masked_logits=masked_logits, mlm_loss=mlm_loss, nsp_loss=nsp_loss,
                                 hidden_states=enc.hidden_states, attentions=enc.attentions)


class BertForMaskedLM(_MaskedLMBase):
    def __init__(self, config: BertConfig):
        super().__init__(config, with_pooler=False)
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                labels: Tensor | None = None, output_hidden_states: bool = False, output_attentions: bool = False,
                masked_only: bool = False) -> ClassifierOutput:
        """labels and masked_only: as BertForPreTraining's."""
        enc = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        logits, masked_logits, loss = self.mlm_outputs(enc.last_hidden_state, labels, masked_only)
        return ClassifierOutput(loss=loss, logits=logits, masked_logits=masked_logits,
                                hidden_states=enc.hidden_states, attentions=enc.attentions)


class BertForNextSentencePrediction(BertPreTrainedModel):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.nsp = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                labels: Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> ClassifierOutput:
        """labels (B,): 0 when B follows A, 1 when it is random."""
        enc = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        logits = self.nsp(enc.pooler_output)  # (B, D) -> (B, 2)
        loss = None if labels is None else next_sentence_loss(logits, labels)
        return ClassifierOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states, attentions=enc.attentions)


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning heads (BERT §4): a dropout and one linear layer on [CLS] (sequence tasks), on every token
# (token tasks), or to a start and an end score per token (SQuAD, §4.2).
# ----------------------------------------------------------------------------------------------------------------
def _classifier_dropout(config: BertConfig) -> nn.Dropout:
    p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    return nn.Dropout(p)


def mean_pool(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """The mean of the real tokens' vectors, padding left out: (B, T, D), (B, T) -> (B, D) (every token when
    attention_mask is None). sentence-transformers' sentence vector, and the sequence head's with
    classifier_pooling "mean"."""
    if attention_mask is None:
        return hidden.mean(1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T) -> (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # (B, T, D) -> (B, D)


class BertForSequenceClassification(BertPreTrainedModel):
    """config.classifier_pooling picks what the classifier reads: "cls", BERT's pooler on [CLS]; "mean", the mean
    of the last layer's real tokens, with no pooler (pretraining by masked LM alone trains neither the pooler nor
    [CLS]; Reimers & Gurevych 2019 pool sentences so). transformers' class has only "cls": finetuning/mean_pooling.py
    says how to run a mean head there."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, with_pooler=config.classifier_pooling == "cls")
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                labels: Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> ClassifierOutput:
        """labels: (B,) class ids, (B,) or (B, C) regression targets, or (B, C) multi-hot floats (see
        sequence_classification_loss)."""
        enc = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        if self.config.classifier_pooling == "mean":
            pooled = mean_pool(enc.last_hidden_state, attention_mask)  # (B, T, D) -> (B, D)
        else:
            pooled = enc.pooler_output  # (B, D)
        logits = self.classifier(self.dropout(pooled))  # (B, D) -> (B, C)
        loss = None if labels is None else sequence_classification_loss(logits, labels, self.config)
        return ClassifierOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states, attentions=enc.attentions)


class BertForTokenClassification(BertPreTrainedModel):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, with_pooler=False)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                labels: Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> ClassifierOutput:
        """labels (B, T): a class id per token, IGNORE_INDEX where no tag is predicted."""
        enc = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions)
        logits = self.classifier(self.dropout(enc.last_hidden_state))  # (B, T, D) -> (B, T, C)
        loss = None if labels is None else token_classification_loss(logits, labels)
        return ClassifierOutput(loss=loss, logits=logits, hidden_states=enc.hidden_states, attentions=enc.attentions)


class BertForQuestionAnswering(BertPreTrainedModel):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, with_pooler=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                start_positions: Tensor | None = None, end_positions: Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> QuestionAnsweringOutput:
        """start_positions, end_positions (B,): the answer's first and last token; 0 ([CLS]) for no answer, T or
        beyond for an answer outside the window (ignored)."""
        # transformers' QA loss is a softmax over every position, padding included, so training needs the
        # padded positions' logits computed as it computes them.
        enc = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states, output_attentions,
                        unpad=False if start_positions is not None else None)
        start_logits, end_logits = self.qa_outputs(enc.last_hidden_state).unbind(-1)  # (B, T, 2) -> 2 x (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            halves = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
            loss = halves["start"] + halves["end"]
        return QuestionAnsweringOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                       hidden_states=enc.hidden_states, attentions=enc.attentions)


MODEL_CLASSES = {cls.__name__: cls for cls in (
    BertModel, BertForPreTraining, BertForMaskedLM, BertForNextSentencePrediction, BertForSequenceClassification,
    BertForTokenClassification, BertForQuestionAnswering)}
