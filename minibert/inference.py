"""Batched inference: sentence embeddings and [MASK] filling. Batches are built from length-sorted texts so that
little compute goes to padding; results come back in the caller's order."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from minibert.errors import InputError, shown, spelled
from minibert.model import BertForMaskedLM, BertForPreTraining, BertModel
from minibert.tokenizer import BertTokenizer


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices of `lengths`, longest first (ties keep their order). Batches cut from this order hold similar
    lengths, so little of each is padding; longest first makes a batch too big for memory fail at once."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (`longest_first`, so memory peaks at the start)."""
    if not isinstance(batch_size, int) or batch_size < 1:  # range() would take a negative step and give nothing
        raise InputError(f"{spelled('batch_size')} must be a positive integer, got {batch_size!r}")
    order = longest_first(lengths)
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def max_length_for(model: BertModel | BertForMaskedLM | BertForPreTraining, tokenizer: BertTokenizer,
                   max_length: int | None = None) -> int:
    """Tokens per text: `max_length`, or when None the most the model reads (its positions, and the tokenizer's
    model_max_length). More than the model reads is an error naming the setting, not a failure at the first long
    text; too few to hold a token of text too (BertTokenizer.check_room)."""
    most = min(model.config.max_position_embeddings, tokenizer.model_max_length)
    if max_length is None:
        return most
    if not isinstance(max_length, int) or max_length > most:
        raise InputError(f"{spelled('max_length')} {max_length!r} is more than this model reads: {most} tokens "
                         f"(max_position_embeddings {model.config.max_position_embeddings}, the tokenizer's "
                         f"model_max_length {tokenizer.model_max_length})")
    tokenizer.check_room(max_length)
    return max_length


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average over real tokens: (B, T, D), (B, T) -> (B, D)."""
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T) -> (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


@torch.inference_mode()
def embed(model: BertModel, tokenizer: BertTokenizer, texts: Sequence[str], pooling: str = "mean",
          normalize: bool = False, batch_size: int = 32, max_length: int | None = None) -> torch.Tensor:
    """Sentence embeddings (len(texts), D). pooling: "mean" over real tokens (sentence-transformers' default),
    "cls" the final [CLS] vector, or "pooler" BERT's tanh pooler output. Texts are cut to `max_length` tokens
    (default: the most the model reads)."""
    if pooling not in ("mean", "cls", "pooler"):
        raise InputError(f"--pooling must be mean, cls or pooler, got {pooling!r}")
    if not texts:
        raise InputError("no texts to embed")
    if not isinstance(batch_size, int) or batch_size < 1:  # before the output buffer: never write unfilled rows
        raise InputError(f"{spelled('batch_size')} must be a positive integer, got {batch_size!r}")
    max_length = max_length_for(model, tokenizer, max_length)
    model.eval()
    lengths = [len(ids) for ids in tokenizer.encode_batch_ids(texts)]
    out = torch.full((len(texts), model.config.hidden_size), float("nan"))  # a row left unfilled shows
    for index in length_sorted_batches(lengths, batch_size):
        batch = tokenizer([texts[i] for i in index], max_length=max_length)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        enc = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        if pooling == "mean":
            vectors = mean_pool(enc.last_hidden_state, batch["attention_mask"])
        elif pooling == "cls":
            vectors = enc.last_hidden_state[:, 0]
        else:
            if enc.pooler_output is None:
                raise InputError("this model has no pooler; use --pooling mean or cls")
            vectors = enc.pooler_output
        out[index] = vectors.float().cpu()
    return F.normalize(out, dim=-1) if normalize else out


@torch.inference_mode()
def fill_mask(model: BertForMaskedLM | BertForPreTraining, tokenizer: BertTokenizer, text: str,
              top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each [MASK] in `text`, the top_k (token, probability) predictions."""
    if not isinstance(top_k, int) or not 1 <= top_k <= tokenizer.vocab_size:
        raise InputError(f"{spelled('top_k')} must be between 1 and the vocabulary size ({tokenizer.vocab_size}), "
                         f"got {top_k!r}")
    batch = tokenizer([text], truncation=False)
    is_mask = batch["input_ids"][0] == tokenizer.mask_id
    if not bool(is_mask.any()):
        raise InputError(f"no [MASK] token in {shown(text)}")
    most, tokens = max_length_for(model, tokenizer), batch["input_ids"].shape[1]
    if tokens > most:  # cutting the text could cut a [MASK] off, and a prediction away from its context
        past = [position + 1 for position in is_mask.nonzero().flatten().tolist() if position >= most]
        raise InputError(f"the text is {tokens:,} tokens, more than the {most} this model reads"
                         + (f"; its [MASK] at token {past[0]:,} would be cut off" if past else "") + "; shorten it")
    model.eval()
    out = model(batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device),
                batch["token_type_ids"].to(model.device))
    logits = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits
    probs = logits[0, is_mask.to(logits.device)].float().softmax(-1)  # (masks, V)
    top = probs.topk(top_k, dim=-1)
    return [[(tokenizer.convert_ids_to_tokens([i])[0], float(p)) for p, i in zip(ps.tolist(), ids.tolist())]
            for ps, ids in zip(top.values, top.indices)]
