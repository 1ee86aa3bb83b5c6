"""Turning examples into model inputs. Features are plain lists of ids, one per example (or per window, for
question answering); `collate` pads them into tensors only when a batch is formed, so each batch is only as wide
as its longest member (BERT 2018, section 4: the fine-tuning input formats for sentence pairs, tagging and SQuAD).
A QA head's logits become answers in qa_decoding.py."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
from tokenizers import Tokenizer

from minibert.errors import DataError, elided, spelled
from minibert.model import IGNORE_INDEX
from minibert.finetuning.readers import QAExample, TaggedSentence, TextExample, label_id, parse_score
from minibert.tokenizer import BertTokenizer

CLS_POSITION = 0  # where the QA head points for "no answer in this window"


@dataclass
class Feature:
    """Inputs for sequence or token classification. `label` is a class id, a float (regression) or, for token
    classification, one id per token; `word_ids` maps each token back to its word (None for [CLS]/[SEP])."""
    input_ids: list[int]
    token_type_ids: list[int]
    label: int | float | list[int] | None = None
    word_ids: list[int | None] | None = None


@dataclass
class QAFeature:
    """One window of question + context. `offsets` holds each context token's (start, end) characters in the
    context, None for question and special tokens; the answer's token positions are 0 ([CLS]) when absent."""
    example_id: str
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]
    start_position: int = CLS_POSITION
    end_position: int = CLS_POSITION


@contextmanager
def _truncating(tokenizer: BertTokenizer, max_length: int, strategy: str, stride: int = 0,
                pair: bool = False) -> Iterator[Tokenizer]:
    """The backend with truncation on for the duration of a call; it is off otherwise (see BertTokenizer)."""
    tokenizer.check_room(max_length, pair)
    tokenizer.backend.enable_truncation(max_length, stride=stride, strategy=strategy)
    try:
        yield tokenizer.backend
    finally:
        tokenizer.backend.no_truncation()


# -- sequence classification, pairs, regression ---------------------------------------------------------------
def encode_classification(tokenizer: BertTokenizer, examples: Sequence[TextExample], max_length: int = 128,
                          label_map: Mapping[str, int] | None = None, regression: bool = False) -> list[Feature]:
    """`[CLS] text [SEP]` or `[CLS] text [SEP] pair [SEP]`, cut to `max_length`. Pairs lose tokens from the
    longer side first ("longest_first"), so a long premise cannot crowd out its hypothesis. Labels become ids
    through `label_map`, or floats when `regression`; examples without labels (test sets) get None."""
    inputs = [(example.text, example.pair) if example.pair is not None else example.text for example in examples]
    pairs = any(example.pair is not None for example in examples)
    with _truncating(tokenizer, max_length, "longest_first", pair=pairs) as backend:
        encodings = backend.encode_batch(inputs)
    return [Feature(encoding.ids, encoding.type_ids, _sequence_label(example, label_map, regression))
            for example, encoding in zip(examples, encodings)]


def _sequence_label(example: TextExample, label_map: Mapping[str, int] | None, regression: bool) -> int | float | None:
    if example.label is None:
        return None
    if regression:
        return parse_score(example.label, example.origin)
    if label_map is None:
        raise ValueError("encode_classification: the examples have labels but no label_map was given "
                         "(build one with build_label_map, or pass regression=True)")
    return label_id(example.label, label_map, example.origin)


# -- token classification -------------------------------------------------------------------------------------
def encode_token_classification(tokenizer: BertTokenizer, sentences: Sequence[TaggedSentence],
                                label_map: Mapping[str, int], max_length: int = 128) -> list[Feature]:
    """Word-piece each sentence's words and align its tags to the pieces (`align_labels`). Words past
    `max_length` are cut off; `word_predictions` gives them a fill value so predictions still cover every word."""
    with _truncating(tokenizer, max_length, "longest_first") as backend:
        encodings = backend.encode_batch([sentence.tokens for sentence in sentences], is_pretokenized=True)
    features = []
    for sentence, encoding in zip(sentences, encodings):
        labels = None  # a sentence to predict, without tags
        if sentence.tags is not None:
            tag_ids = [label_id(tag, label_map, f"{sentence.origin} word {index + 1}")
                       for index, tag in enumerate(sentence.tags)]
            labels = align_labels(encoding.word_ids, tag_ids)
        features.append(Feature(encoding.ids, encoding.type_ids, labels, list(encoding.word_ids)))
    return features


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """One label per token: the word's label on its first piece, IGNORE_INDEX on its other pieces and on
    [CLS]/[SEP]. The loss then counts each word once, however many pieces WordPiece split it into (BERT 2018,
    section 5.3 uses the first sub-token's representation for each word)."""
    labels, previous_word = [], None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous_word else word_labels[word])
        previous_word = word
    return labels


def word_predictions(word_ids: Sequence[int | None], token_predictions: Sequence[int], n_words: int,
                     fill: int) -> list[int]:
    """Map per-token predictions back to words, reading each word's first piece as `align_labels` labelled it.
    Words with no piece (cut by truncation, or made only of characters the normaliser drops) get `fill`,
    usually the id of "O", so the result lines up with the sentence's tags."""
    predictions, previous_word = [fill] * n_words, None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous_word:
            predictions[word] = int(token_predictions[position])
        previous_word = word
    return predictions


# -- extractive question answering (SQuAD) --------------------------------------------------------------------
def encode_qa(tokenizer: BertTokenizer, examples: Sequence[QAExample], max_length: int = 384,
              doc_stride: int = 128) -> list[QAFeature]:
    """`[CLS] question [SEP] context [SEP]` windows, as transformers' run_qa.py builds them: only the context is
    cut ("only_second"), and a context too long for one window continues in the next, overlapping by
    `doc_stride` tokens so that an answer cut by one window's edge lies whole inside a neighbour."""
    questions = [example.question.lstrip() for example in examples]  # SQuAD has questions with leading spaces
    _check_room_for_context(tokenizer, examples, questions, max_length, doc_stride)
    with _truncating(tokenizer, max_length, "only_second", stride=doc_stride, pair=True) as backend:
        encodings = backend.encode_batch([(question, example.context)
                                          for question, example in zip(questions, examples)])
    features = []
    for example, encoding in zip(examples, encodings):
        for window in [encoding, *encoding.overflowing]:
            offsets = [offset if sequence == 1 else None
                       for offset, sequence in zip(window.offsets, window.sequence_ids)]
            start, end = _answer_positions(example, offsets)
            features.append(QAFeature(example.id, window.ids, window.type_ids, offsets, start, end))
    return features


def default_doc_stride(max_length: int) -> int:
    """A quarter of the window, at most 128 (SQuAD's usual overlap with 384-token windows): enough for an
    answer cut by one window's edge to lie whole in the next, while leaving room for the question."""
    return min(128, max_length // 4)


def _check_room_for_context(tokenizer: BertTokenizer, examples: Sequence[QAExample], questions: Sequence[str],
                            max_length: int, doc_stride: int) -> None:
    """Each window must advance through the context: its room (max_length - question - 3 specials) must exceed
    the overlap. The tokenizers library would otherwise fail without saying which question."""
    tokenizer.check_room(max_length, pair=True)
    for example, question_ids in zip(examples, tokenizer.encode_batch_ids(questions)):
        room = max(0, max_length - len(question_ids) - 3)
        if room <= doc_stride:
            raise DataError(f"question {elided(example.id, 40)}: its {len(question_ids)} tokens leave {room} of "
                            f"{spelled('max_length')} {max_length} for the context (after [CLS] and two [SEP]), "
                            f"which must be more than {spelled('doc_stride')} {doc_stride}")


def _answer_positions(example: QAExample, offsets: Sequence[tuple[int, int] | None]) -> tuple[int, int]:
    """Token positions of the first gold answer in this window, or [CLS] twice when the window does not hold
    all of it: the model learns to point at [CLS] for "no answer here"."""
    context_positions = [position for position, offset in enumerate(offsets) if offset is not None]
    if example.is_impossible or not example.answers or not context_positions:
        return CLS_POSITION, CLS_POSITION
    start_char = example.answers[0]["answer_start"]
    end_char = start_char + len(example.answers[0]["text"])
    if offsets[context_positions[0]][0] > start_char or offsets[context_positions[-1]][1] < end_char:
        return CLS_POSITION, CLS_POSITION
    start = max(position for position in context_positions if offsets[position][0] <= start_char)
    end = min(position for position in context_positions if offsets[position][1] >= end_char)
    return start, end


# -- batching -------------------------------------------------------------------------------------------------
def collate(features: Sequence[Feature | QAFeature], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest member: input_ids with `pad_id`, token_type_ids and attention_mask with 0,
    token labels with IGNORE_INDEX. Labels come as `labels` (float for regression), or, for QA, as
    `start_positions`/`end_positions`, the names transformers' heads take."""
    width = max(len(feature.input_ids) for feature in features)
    batch = {
        "input_ids": _pad([feature.input_ids for feature in features], width, pad_id),
        "token_type_ids": _pad([feature.token_type_ids for feature in features], width, 0),
        "attention_mask": _pad([[1] * len(feature.input_ids) for feature in features], width, 0),
    }
    if isinstance(features[0], QAFeature):
        batch["start_positions"] = torch.tensor([feature.start_position for feature in features])
        batch["end_positions"] = torch.tensor([feature.end_position for feature in features])
    elif features[0].label is not None:
        batch["labels"] = _label_tensor([feature.label for feature in features], width)
    return batch


def _pad(rows: Sequence[Sequence[int]], width: int, value: int) -> torch.Tensor:
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows], dtype=torch.long)  # (B, T)


def _label_tensor(labels: Sequence[int | float | list[int]], width: int) -> torch.Tensor:
    if isinstance(labels[0], list):
        return _pad(labels, width, IGNORE_INDEX)  # (B, T)
    if isinstance(labels[0], float):
        return torch.tensor(labels, dtype=torch.float32)  # (B,)
    return torch.tensor(labels, dtype=torch.long)  # (B,)
