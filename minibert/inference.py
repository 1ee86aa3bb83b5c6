"""Batched inference: sentence embeddings and [MASK] filling, from a folder, a hub id or a loaded model. Batches are
built from length-sorted texts so that little compute goes to padding; results come back in the caller's order.

    embed("sentence-transformers/all-MiniLM-L6-v2", ["a great film", "a dull one"])  # = SentenceTransformer's encode
    fill_mask("runs/tiny/final", "paris is the capital of [MASK].")                    # [[("france", 0.61), ...]]
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from minibert.errors import CheckpointError, InputError, spelled
from minibert.model import BertForMaskedLM, BertForPreTraining, BertModel, BertPreTrainedModel, mean_pool
from minibert.sentence_settings import POOLING_MODES, SentenceSettings, read_sentence_settings
from minibert.tokenizer import BertTokenizer

logger = logging.getLogger("minibert")


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


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One sentence vector per row, as sentence-transformers' Pooling computes it (right padding):
    (B, T, D), (B, T) -> (B, D). `attention_mask` is 0 at positions left out (padding, an excluded prompt)."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T) -> (B, T, 1)
    if mode == "mean":
        return mean_pool(hidden, attention_mask)
    if mode == "mean_sqrt_len_tokens":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9).sqrt()
    if mode == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).max(1).values
    if mode == "weightedmean":  # position weights 1..T
        weights = mask * torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype, device=hidden.device)[None, :, None]
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if mode == "cls":  # the first position the mask keeps: [CLS], or the first token after an excluded prompt
        return hidden[rows, attention_mask.to(torch.int).argmax(1)]  # (B, T, D) -> (B, D)
    if mode == "lasttoken":  # the last position the mask keeps
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None, :] * attention_mask  # (B, T)
        return hidden[rows, positions.argmax(1)]  # (B, T, D) -> (B, D)
    raise InputError(f"{spelled('pooling')} {mode!r}: expected one of {', '.join(POOLINGS)}")


POOLINGS = POOLING_MODES + ("pooler",)  # "pooler": BERT's tanh pooler on [CLS] (trained by NSP, not by sentence-transformers)


def _settings(model: BertPreTrainedModel, given: dict[str, Any]) -> SentenceSettings:
    """The model folder's sentence-transformers settings (read_sentence_settings), with the arguments given on top."""
    report = getattr(model, "load_report", None)
    folder = Path(report.source).parent if report is not None else None
    settings = read_sentence_settings(folder) if folder is not None else SentenceSettings()
    given = {name: value for name, value in given.items() if value is not None}
    if isinstance(given.get("pooling"), str):
        given["pooling"] = (given["pooling"],)
    for mode in given.get("pooling", ()):
        if mode not in POOLINGS:
            raise InputError(f"{spelled('pooling')} must be one of {', '.join(POOLINGS)}, got {mode!r}")
    return dataclasses.replace(settings, **given)


def _prompt(settings: SentenceSettings, prompt: str | None, prompt_name: str | None) -> str:
    """The text put before every input: `prompt`, else the folder's prompt named `prompt_name` (default: its
    default_prompt_name), else none."""
    if prompt is not None:
        return prompt
    name = prompt_name if prompt_name is not None else settings.default_prompt_name
    if name is None:
        return ""
    if name not in (settings.prompts or {}):
        raise InputError(f"{spelled('prompt_name')} {name!r} is not one of the model's prompts "
                         f"({', '.join(settings.prompts or {}) or 'it has none'})")
    return settings.prompts[name]


def load_for_inference(cls: type, model: str | os.PathLike | BertPreTrainedModel,
                       tokenizer: str | os.PathLike | BertTokenizer | None) -> tuple[BertPreTrainedModel, BertTokenizer]:
    """(model, tokenizer): `model` loaded as `cls` when it is a folder, file or hub id, and its tokenizer (the
    model's own folder's unless given)."""
    if not isinstance(model, torch.nn.Module):
        model = cls.from_pretrained(model)
    if isinstance(tokenizer, BertTokenizer):
        return model, tokenizer
    if tokenizer is None:
        report = getattr(model, "load_report", None)
        if report is None:
            raise InputError(f"this {type(model).__name__} was not loaded from a folder; pass {spelled('tokenizer')}")
        tokenizer = Path(report.source).parent
    return model, BertTokenizer.from_pretrained(tokenizer)


@torch.inference_mode()
def embed(model: str | os.PathLike | BertPreTrainedModel, texts: str | Sequence[str], *,
          tokenizer: str | os.PathLike | BertTokenizer | None = None, pooling: str | Sequence[str] | None = None,
          normalize: bool | None = None, max_length: int | None = None, prompt: str | None = None,
          prompt_name: str | None = None, batch_size: int = 32) -> torch.Tensor:
    """Sentence embeddings, (len(texts), D), or (D,) for one text; float32 on the CPU.

    `model`: a folder, weights file or hub id (its encoder is loaded), or a loaded minibert model. What a
    sentence-transformers folder says (minibert.sentence_settings: pooling, normalisation, max_seq_length,
    lowercasing, prompts) is applied, so the vectors are `SentenceTransformer(model).encode(texts)`'s; a plain BERT
    folder gets mean pooling over real tokens, unnormalised, at the model's length. Arguments given override it:
    `pooling` ("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken", or "pooler": BERT's tanh
    pooler on [CLS]; several are concatenated), `normalize` (unit length), `max_length` (tokens per text, longer
    ones cut), `prompt` (text put before each input) or `prompt_name` (one of the folder's prompts)."""
    model, tokenizer = load_for_inference(BertModel, model, tokenizer)
    encoder = model if isinstance(model, BertModel) else model.bert
    settings = _settings(model, {"pooling": pooling, "normalize": normalize, "max_length": max_length})
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    if not texts:
        raise InputError("no texts to embed")
    if not all(isinstance(text, str) for text in texts):
        bad = next(i for i, text in enumerate(texts) if not isinstance(text, str))
        raise InputError(f"{spelled('texts')}[{bad}] is {type(texts[bad]).__name__}, not a string")
    if not isinstance(batch_size, int) or batch_size < 1:  # before the output buffer: never write unfilled rows
        raise InputError(f"{spelled('batch_size')} must be a positive integer, got {batch_size!r}")
    if "pooler" in settings.pooling and hasattr(model, "load_report"):
        model.load_report.check_trained(f"embed {spelled('pooling')} pooler", ("pooler.", "bert.pooler."))
    limit = min(encoder.config.max_position_embeddings, tokenizer.model_max_length)
    length = settings.max_length or limit
    if not isinstance(length, int) or not 2 <= length <= encoder.config.max_position_embeddings:
        raise InputError(f"{spelled('max_length')} must be between 2 and the model's "
                         f"{encoder.config.max_position_embeddings} positions, got {length!r}")
    before = _prompt(settings, prompt, prompt_name)
    texts = [before + (text.lower() if settings.lowercase else text) for text in texts]
    # sentence-transformers' prompt length: the prompt's tokens with [CLS], without the closing [SEP].
    excluded = len(tokenizer.encode_ids(before)) + 1 if before and not settings.include_prompt else 0
    logger.info("embedding %d texts: %s pooling%s, at most %d tokens%s (settings: %s)", len(texts),
                "+".join(settings.pooling), ", normalised" if settings.normalize else "", length,
                f", prompt {before!r}" if before else "", settings.source)
    out = _embed_batches(encoder, tokenizer, texts, settings.pooling, length, batch_size, excluded)
    out = F.normalize(out, dim=-1) if settings.normalize else out
    return out[0] if single else out


def _embed_batches(encoder: BertModel, tokenizer: BertTokenizer, texts: list[str], pooling: tuple[str, ...],
                   max_length: int, batch_size: int, excluded: int) -> torch.Tensor:
    """The pooled vectors of `texts`, computed in length-sorted batches, in the texts' order."""
    encoder.eval()
    lengths = [len(ids) for ids in tokenizer.encode_batch_ids(texts)]
    width = encoder.config.hidden_size * len(pooling)
    out = torch.full((len(texts), width), float("nan"))  # a row left unfilled shows
    for index in length_sorted_batches(lengths, batch_size):
        batch = {k: v.to(encoder.device) for k, v in tokenizer([texts[i] for i in index], max_length=max_length).items()}
        enc = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        mask = batch["attention_mask"].clone()
        mask[:, :excluded] = 0  # a prompt left out of the pooling
        vectors = [enc.pooler_output if mode == "pooler" else pool(enc.last_hidden_state, mask, mode)
                   for mode in pooling]
        if any(v is None for v in vectors):
            raise InputError(f"this model has no pooler; use another {spelled('pooling')} (mean, cls, ...)")
        out[index] = torch.cat(vectors, dim=-1).float().cpu()
    return out


@torch.inference_mode()
def fill_mask(model: str | os.PathLike | BertForMaskedLM | BertForPreTraining, text: str, *,
              tokenizer: str | os.PathLike | BertTokenizer | None = None,
              top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each [MASK] in `text`, the top_k (token, probability) predictions. `model`: a folder, weights file or
    hub id with a trained masked-LM head (loaded as BertForMaskedLM), or a loaded model with one."""
    model, tokenizer = load_for_inference(BertForMaskedLM, model, tokenizer)
    if not isinstance(model, (BertForMaskedLM, BertForPreTraining)):
        raise InputError(f"fill_mask needs a BertForMaskedLM or BertForPreTraining, got {type(model).__name__}")
    report = getattr(model, "load_report", None)
    if report is not None and any(name.startswith("mlm.") for name in report.newly_initialised):
        # A random head would give confident nonsense.
        raise CheckpointError(f"{report.source}: has no masked-LM head (cls.predictions.*); fill-mask needs one")
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
