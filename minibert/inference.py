"""Batched inference: sentence embeddings and [MASK] filling. Batches are built from length-sorted texts so that
little compute goes to padding; results come back in the caller's order."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from minibert.errors import InputError, spelled
from minibert.model import BertForMaskedLM, BertForPreTraining, BertModel, mean_pool
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


@torch.inference_mode()
def embed(model: BertModel, tokenizer: BertTokenizer, texts: Sequence[str], pooling: str = "mean",
          normalize: bool = False, batch_size: int = 32, max_length: int = 512) -> torch.Tensor:
    """Sentence embeddings (len(texts), D). pooling: "mean" over real tokens (sentence-transformers' default),
    "cls" the final [CLS] vector, or "pooler" BERT's tanh pooler output."""
    if pooling not in ("mean", "cls", "pooler"):
        raise InputError(f"--pooling must be mean, cls or pooler, got {pooling!r}")
    if not texts:
        raise InputError("no texts to embed")
    if not isinstance(batch_size, int) or batch_size < 1:  # before the output buffer: never write unfilled rows
        raise InputError(f"{spelled('batch_size')} must be a positive integer, got {batch_size!r}")
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
    batch = tokenizer([text])
    is_mask = batch["input_ids"][0] == tokenizer.mask_id
    if not bool(is_mask.any()):
        raise InputError(f"no [MASK] token in {text!r}")
    model.eval()
    out = model(batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device),
                batch["token_type_ids"].to(model.device))
    logits = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits
    probs = logits[0, is_mask.to(logits.device)].float().softmax(-1)  # (masks, V)
    top = probs.topk(top_k, dim=-1)
    return [[(tokenizer.convert_ids_to_tokens([i])[0], float(p)) for p, i in zip(ps.tolist(), ids.tolist())]
            for ps, ids in zip(top.values, top.indices)]
