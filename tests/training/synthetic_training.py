"""Tiny models and synthetic data for the training tests (no files, no tokenizer)."""

from __future__ import annotations

import time

import torch
from torch.utils.data import Dataset

from minibert.config import BertConfig
from minibert.model import BertForPreTraining

VOCAB, LENGTH, MASK_ID = 64, 16, 3
FIRST_WORD = 5  # ids below are special: 0 [PAD], 1 [CLS], 2 [SEP], 3 [MASK]


def tiny_config(**overrides) -> BertConfig:
    settings = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)
    return BertConfig(**{**settings, **overrides})


def tiny_model(cls=BertForPreTraining, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return cls(tiny_config(**overrides))


class SyntheticPretraining(Dataset):
    """`size` sequences of LENGTH ids with 0-5 padded positions, each with input_ids, token_type_ids,
    attention_mask, labels (-100 where unmasked) and next_sentence_label.

    dynamic=False: masks are drawn once, from `seed`. dynamic=True: each __getitem__ draws its masks from torch's
    global generator, as dynamic masking does, which is what the loop must make repeatable. The number of masked
    tokens varies between examples, so micro-batches of one step have different MLM counts. `delay` (seconds per
    example) slows loading, to give a test time to interrupt a run."""

    def __init__(self, size: int, seed: int = 0, dynamic: bool = False, nsp: bool = True, delay: float = 0.0):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(FIRST_WORD, VOCAB, (size, LENGTH), generator=generator)
        self.lengths = LENGTH - torch.randint(0, 6, (size,), generator=generator)
        self.nsp_labels = torch.randint(0, 2, (size,), generator=generator)
        self.fixed_masks = [self.draw_mask(i, generator) for i in range(size)]
        self.dynamic, self.nsp, self.delay = dynamic, nsp, delay

    def draw_mask(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        real = torch.arange(LENGTH) < self.lengths[index]
        mask = (torch.rand(LENGTH, generator=generator) < 0.25) & real
        mask[0] = True  # at least one masked token per sequence
        return mask

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.delay:
            time.sleep(self.delay)
        mask = self.draw_mask(index) if self.dynamic else self.fixed_masks[index]
        real = torch.arange(LENGTH) < self.lengths[index]
        ids = torch.where(real, self.ids[index], torch.zeros_like(self.ids[index]))
        example = {"input_ids": torch.where(mask, torch.full_like(ids, MASK_ID), ids),
                   "token_type_ids": (torch.arange(LENGTH) >= LENGTH // 2).long() * real,
                   "attention_mask": real.long(),
                   "labels": torch.where(mask, ids, torch.full_like(ids, -100))}
        if self.nsp:
            example["next_sentence_label"] = self.nsp_labels[index]
        return example


def stack(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([example[key] for example in examples]) for key in examples[0]}
