"""Masked-LM corruption (BERT 2018, section 3.1 "Task #1: Masked LM"; appendix A.1), following
`create_masked_lm_predictions` in Google's `create_pretraining_data.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import numpy as np

from minibert.model import IGNORE_INDEX
from minibert.tokenizer import BertTokenizer


def num_to_predict(num_tokens: int, masked_lm_prob: float, max_predictions_per_seq: int) -> int:
    """How many positions to mask. The original counts every token of the example, [CLS] and [SEP]
    included (`len(tokens) * masked_lm_prob`), rounds with Python's `round`, and masks at least one."""
    return min(max_predictions_per_seq, max(1, int(round(num_tokens * masked_lm_prob))))


def mask_tokens(token_ids: np.ndarray, rng: np.random.Generator, *, vocab_size: int, mask_id: int,
                never_mask: Collection[int], masked_lm_prob: float = 0.15, max_predictions_per_seq: int = 20,
                word_continues: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt one example for the MLM task; returns `(input_ids, labels)` as int64 arrays of the same
    length, with `labels` = the original id at chosen positions and IGNORE_INDEX elsewhere.

    Positions are chosen like the original: shuffle the candidate units and take them in turn until
    `num_to_predict` positions are covered; a unit that would overshoot that number is skipped. Each chosen
    position becomes [MASK] with probability 0.8, a random id from the whole vocabulary (specials included,
    as the original draws from `vocab_words`) with 0.1, and stays unchanged with 0.1.

    word_continues: per position, True for a `##` piece. When given, this is whole-word masking: a `##`
    piece joins the unit of the token just before it, so a word is masked all or nothing. (The original
    joins it to the previous *candidate*, which can reach across a [SEP]; here only an adjacent token counts.)
    """
    token_ids = np.asarray(token_ids, dtype=np.int64)
    units = _candidate_units(token_ids, never_mask, word_continues)
    positions = _choose_positions(units, num_to_predict(len(token_ids), masked_lm_prob,
                                                        max_predictions_per_seq), rng)
    labels = np.full_like(token_ids, IGNORE_INDEX)
    labels[positions] = token_ids[positions]
    input_ids = token_ids.copy()
    roll = rng.random(len(positions))
    input_ids[positions[roll < 0.8]] = mask_id
    replace = positions[(roll >= 0.8) & (roll < 0.9)]
    input_ids[replace] = rng.integers(0, vocab_size, size=len(replace))
    return input_ids, labels


def _candidate_units(token_ids: np.ndarray, never_mask: Collection[int],
                     word_continues: np.ndarray | None) -> list[np.ndarray]:
    """Positions that may be masked, grouped into the units masked together: one token each, or with
    whole-word masking one word (its first piece and the `##` pieces right after it)."""
    maskable = np.ones(len(token_ids), dtype=bool)
    for special in never_mask:
        maskable &= token_ids != special
    candidates = np.flatnonzero(maskable)  # (N,) positions
    if word_continues is None or len(candidates) == 0:
        return list(candidates[:, None])  # (N, 1): one unit per token
    adjacent = np.diff(candidates, prepend=-2) == 1
    joins_previous = np.asarray(word_continues, dtype=bool)[candidates] & adjacent
    return np.split(candidates, np.flatnonzero(~joins_previous)[1:])


def _choose_positions(units: list[np.ndarray], budget: int, rng: np.random.Generator) -> np.ndarray:
    chosen: list[int] = []
    for unit in rng.permutation(len(units)):
        if len(chosen) >= budget:
            break
        if len(chosen) + len(units[unit]) > budget:
            continue
        chosen.extend(units[unit].tolist())
    return np.array(sorted(chosen), dtype=np.int64)


def subword_table(tokenizer: BertTokenizer) -> np.ndarray:
    """Per vocabulary id, True for a `##` continuation piece: what whole-word masking needs to know."""
    table = np.zeros(tokenizer.vocab_size, dtype=bool)
    for token, index in tokenizer.backend.get_vocab(with_added_tokens=True).items():
        table[index] = token.startswith("##")
    return table


@dataclass(frozen=True, eq=False)
class Masker:
    """The masking settings of one dataset, so static masking (at creation) and dynamic masking (at read
    time) run the same function with the same arguments.

    subword: `subword_table(...)` for whole-word masking, None for the original's per-token masking.
    """

    vocab_size: int
    mask_id: int
    never_mask: tuple[int, ...]
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    subword: np.ndarray | None = None

    @classmethod
    def for_tokenizer(cls, tokenizer: BertTokenizer, masked_lm_prob: float = 0.15,
                      max_predictions_per_seq: int = 20, whole_word: bool = False) -> "Masker":
        """[CLS], [SEP] and [PAD] are never masked; [UNK] and the rest are, as in the original."""
        return cls(tokenizer.vocab_size, tokenizer.mask_id,
                   (tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id), masked_lm_prob,
                   max_predictions_per_seq, subword_table(tokenizer) if whole_word else None)

    def __call__(self, token_ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        token_ids = np.asarray(token_ids, dtype=np.int64)
        word_continues = None if self.subword is None else self.subword[token_ids]
        return mask_tokens(token_ids, rng, vocab_size=self.vocab_size, mask_id=self.mask_id,
                           never_mask=self.never_mask, masked_lm_prob=self.masked_lm_prob,
                           max_predictions_per_seq=self.max_predictions_per_seq,
                           word_continues=word_continues)
