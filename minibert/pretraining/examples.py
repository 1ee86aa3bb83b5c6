"""Pretraining examples built the way Google's `create_pretraining_data.py` builds them (BERT 2018, section
3.1 and appendix A.2): sentence pairs for next-sentence prediction (NSP) and masked-LM labels.

Per document, sentences are gathered into a chunk until it reaches a target length; the chunk is cut into
segment A (its first `a_end` sentences) and B (the rest, label 0 "is next"), or, half the time, B is taken
from a random other document (label 1 "random next") and the unused sentences are put back for the next
example. The pair is trimmed to fit, wrapped as [CLS] A [SEP] B [SEP], and masked.

One difference of scale: the original reads the whole corpus into memory. Here documents are read, shuffled
and paired `documents_per_chunk` at a time, so a random B comes from the same chunk, and examples are
shuffled within their chunk (a training loader shuffles across chunks). With one chunk (a corpus of at most
`documents_per_chunk` documents) this is the original's procedure, with numpy's RNG in place of Python's (so
a seed gives other examples than the original script would, drawn from the same distribution).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from minibert.model import IGNORE_INDEX
from minibert.pretraining.masking import Masker
from minibert.errors import DataError
from minibert.tokenizer import BertTokenizer

TokenizedDocument = list[list[int]]  # a document as the token ids of each of its sentences


@dataclass(frozen=True)
class PretrainingOptions:
    """The settings of the original script, with its defaults (flags of the same names), plus:

    nsp: False makes MLM-only examples, [CLS] text [SEP] with one segment of up to `max_seq_length - 2`
      tokens and no NSP label (RoBERTa found NSP can be dropped). Like every example here, it never crosses
      a document boundary, so a short document gives a short example.
    dynamic_masking: False masks once at creation like the original (`dupe_factor` copies get different
      masks); True stores unmasked ids and masks at read time, fresh each epoch (RoBERTa's dynamic masking).
    """

    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word_mask: bool = False
    nsp: bool = True
    dynamic_masking: bool = False
    documents_per_chunk: int = 10_000
    seed: int = 12345

    def __post_init__(self):
        if self.max_seq_length < 8:
            raise DataError(f"max_seq_length {self.max_seq_length} is below 8: too short for "
                            "[CLS] A [SEP] B [SEP] with words in both segments")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise DataError(f"short_seq_prob {self.short_seq_prob} is not a probability in [0, 1]")
        if not 0.0 < self.masked_lm_prob <= 1.0:
            raise DataError(f"masked_lm_prob {self.masked_lm_prob} is not in (0, 1]")
        for name in ("dupe_factor", "max_predictions_per_seq", "documents_per_chunk"):
            if getattr(self, name) < 1:
                raise DataError(f"{name} {getattr(self, name)} must be at least 1")

    @property
    def max_num_tokens(self) -> int:
        """Tokens left for text after the specials: 3 ([CLS] A [SEP] B [SEP]), or 2 without NSP."""
        return self.max_seq_length - (3 if self.nsp else 2)


@dataclass(eq=False)
class PretrainingExample:
    """One example as stored. input_ids: [CLS] A [SEP] B [SEP] (masked already when masking is static);
    b_start: first position of B (token type 1), `len(input_ids)` when there is no B; masked_positions /
    masked_ids: where static masking masked and the ids that were there (empty with dynamic masking)."""

    input_ids: np.ndarray
    b_start: int
    next_sentence_label: int  # 0: B follows A; 1: B is random; IGNORE_INDEX without NSP
    masked_positions: np.ndarray
    masked_ids: np.ndarray


@dataclass
class CreationCounts:
    documents: int = 0
    sentences: int = 0
    examples: int = 0
    tokens: int = 0
    random_next: int = 0


# -- the original's algorithm, for one document ---------------------------------------------------------------
def create_examples_from_document(documents: Sequence[TokenizedDocument], document_index: int,
                                  options: PretrainingOptions, tokenizer: BertTokenizer,
                                  masker: Masker | None, rng: np.random.Generator) -> list[PretrainingExample]:
    """`create_instances_from_document`: cut one document into examples.

    The target length is drawn once per document: usually `max_num_tokens`, but with `short_seq_prob` a
    length uniform in [2, max_num_tokens], so the model also sees the short inputs of fine-tuning tasks.
    """
    document = documents[document_index]
    max_num_tokens = options.max_num_tokens
    target_seq_length = max_num_tokens
    if rng.random() < options.short_seq_prob:
        target_seq_length = int(rng.integers(2, max_num_tokens + 1))  # randint(2, max_num_tokens)

    examples = []
    chunk: list[list[int]] = []
    chunk_length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_seq_length:
            if options.nsp:
                tokens_a, tokens_b, is_random_next, put_back = _pair_from_chunk(
                    chunk, documents, document_index, target_seq_length, rng)
                i -= put_back
            else:
                tokens_a, tokens_b, is_random_next = [t for sentence in chunk for t in sentence], [], None
            tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            examples.append(_make_example(tokens_a, tokens_b, is_random_next, tokenizer, masker, rng))
            chunk, chunk_length = [], 0
        i += 1
    return examples


def _pair_from_chunk(chunk: list[list[int]], documents: Sequence[TokenizedDocument], document_index: int,
                     target_seq_length: int, rng: np.random.Generator) -> tuple[list[int], list[int], bool, int]:
    """Split a chunk into segments A and B; returns (A, B, is_random_next, sentences to put back).

    A is the first `a_end` sentences, a_end uniform in [1, len(chunk) - 1]. A chunk of one sentence must
    take a random B; otherwise B is random with probability 0.5 (RNG draws in the original's order).
    """
    a_end = 1 if len(chunk) == 1 else int(rng.integers(1, len(chunk)))  # randint(1, len(chunk) - 1)
    tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
    if len(chunk) == 1 or rng.random() < 0.5:
        tokens_b = _random_segment(documents, document_index, target_seq_length - len(tokens_a), rng)
        # The sentences after A were not used; the original "puts them back" so they start the next example.
        return tokens_a, tokens_b, True, len(chunk) - a_end
    return tokens_a, [t for sentence in chunk[a_end:] for t in sentence], False, 0


def _random_segment(documents: Sequence[TokenizedDocument], document_index: int, target_b_length: int,
                    rng: np.random.Generator) -> list[int]:
    """Sentences from a random start in a random other document, until `target_b_length` tokens. Like the
    original it gives up avoiding the current document after 10 tries (only a one-document chunk needs that)."""
    for _ in range(10):
        random_index = int(rng.integers(0, len(documents)))
        if random_index != document_index:
            break
    random_document = documents[random_index]
    tokens_b: list[int] = []
    for sentence in random_document[int(rng.integers(0, len(random_document))):]:
        tokens_b.extend(sentence)
        if len(tokens_b) >= target_b_length:
            break
    return tokens_b


def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int,
                      rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Trim the pair to `max_num_tokens` as the original does: one token at a time from the longer side
    (B on a tie), from its front or its back at random, "to add more randomness and avoid biases". The cuts
    are counted and applied once at the end, so a huge sentence costs linear time rather than quadratic."""
    a_from, a_to, b_from, b_to = 0, len(tokens_a), 0, len(tokens_b)
    while (a_to - a_from) + (b_to - b_from) > max_num_tokens:
        from_front = rng.random() < 0.5
        if a_to - a_from > b_to - b_from:
            a_from, a_to = (a_from + 1, a_to) if from_front else (a_from, a_to - 1)
        else:
            b_from, b_to = (b_from + 1, b_to) if from_front else (b_from, b_to - 1)
    return tokens_a[a_from:a_to], tokens_b[b_from:b_to]


def _make_example(tokens_a: list[int], tokens_b: list[int], is_random_next: bool | None,
                  tokenizer: BertTokenizer, masker: Masker | None, rng: np.random.Generator) -> PretrainingExample:
    cls_id, sep_id = tokenizer.cls_id, tokenizer.sep_id
    tokens = [cls_id, *tokens_a, sep_id] + ([*tokens_b, sep_id] if tokens_b else [])
    input_ids = np.array(tokens, dtype=np.int64)
    masked_positions = masked_ids = np.zeros(0, dtype=np.int64)
    if masker is not None:
        input_ids, labels = masker(input_ids, rng)
        masked_positions = np.flatnonzero(labels != IGNORE_INDEX)
        masked_ids = labels[masked_positions]
    label = IGNORE_INDEX if is_random_next is None else int(is_random_next)
    return PretrainingExample(input_ids, len(tokens_a) + 2, label, masked_positions, masked_ids)


# -- the corpus, chunk by chunk ----------------------------------------------------------------------------------
def generate_examples(documents: Iterable[Sequence[str]], tokenizer: BertTokenizer, options: PretrainingOptions,
                      counts: CreationCounts | None = None) -> Iterator[PretrainingExample]:
    """All examples of a corpus, one chunk of documents at a time; deterministic given `options.seed`."""
    counts = counts if counts is not None else CreationCounts()
    rng = np.random.default_rng(options.seed)
    masker = None if options.dynamic_masking else masker_for(tokenizer, options)
    for chunk in _tokenized_chunks(documents, tokenizer, options.documents_per_chunk, counts):
        for example in _examples_from_chunk(chunk, options, tokenizer, masker, rng):
            counts.examples += 1
            counts.tokens += len(example.input_ids)
            counts.random_next += int(example.next_sentence_label == 1)
            yield example
    if counts.documents == 0:
        raise DataError("empty corpus: no document has any tokens")


def masker_for(tokenizer: BertTokenizer, options: PretrainingOptions) -> Masker:
    """The masking that `options` ask for, with this tokenizer's ids."""
    return Masker.for_tokenizer(tokenizer, options.masked_lm_prob, options.max_predictions_per_seq,
                                whole_word=options.whole_word_mask)


def _tokenized_chunks(documents: Iterable[Sequence[str]], tokenizer: BertTokenizer, documents_per_chunk: int,
                      counts: CreationCounts) -> Iterator[list[TokenizedDocument]]:
    """Tokenise `documents_per_chunk` documents in one batch call (the library encodes in parallel). Like
    the original, sentences with no tokens are dropped, then documents with no sentences."""
    iterator = iter(documents)
    while chunk := list(itertools.islice(iterator, documents_per_chunk)):
        ids = tokenizer.encode_batch_ids([sentence for document in chunk for sentence in document])
        tokenized, start = [], 0
        for document in chunk:
            sentences = [s for s in ids[start:start + len(document)] if s]
            start += len(document)
            if sentences:
                tokenized.append(sentences)
                counts.documents += 1
                counts.sentences += len(sentences)
        if tokenized:
            yield tokenized


def _examples_from_chunk(documents: list[TokenizedDocument], options: PretrainingOptions,
                         tokenizer: BertTokenizer, masker: Masker | None,
                         rng: np.random.Generator) -> list[PretrainingExample]:
    """`create_training_instances` on one chunk: shuffle the documents once, walk them `dupe_factor`
    times (each pass draws new splits, random Bs and masks), then shuffle the examples."""
    documents = [documents[i] for i in rng.permutation(len(documents))]
    examples = []
    for _ in range(options.dupe_factor):
        for index in range(len(documents)):
            examples.extend(create_examples_from_document(documents, index, options, tokenizer, masker, rng))
    return [examples[i] for i in rng.permutation(len(examples))]


# -- from stored example to model inputs -----------------------------------------------------------------------
def example_features(example: PretrainingExample, masker: Masker | None, seed: int, epoch: int,
                     index: int) -> dict[str, torch.Tensor]:
    """Model inputs for one example: `input_ids`, `token_type_ids`, `attention_mask`, `labels` (IGNORE_INDEX
    where not masked) and, with NSP, `next_sentence_label`.

    With a `masker` (dynamic masking) the masks are drawn from an RNG seeded by (seed, epoch, index): every
    epoch sees new masks, the same seed gives the same ones, and no state is shared between loader workers.
    """
    if masker is not None:
        input_ids, labels = masker(example.input_ids, np.random.default_rng((seed, epoch, index)))
    else:
        input_ids = np.asarray(example.input_ids, dtype=np.int64)
        labels = np.full_like(input_ids, IGNORE_INDEX)
        labels[example.masked_positions] = example.masked_ids
    length = len(input_ids)
    features = {
        "input_ids": torch.from_numpy(input_ids),
        "token_type_ids": (torch.arange(length) >= example.b_start).long(),
        "attention_mask": torch.ones(length, dtype=torch.long),
        "labels": torch.from_numpy(labels),
    }
    if example.next_sentence_label != IGNORE_INDEX:
        features["next_sentence_label"] = torch.tensor(example.next_sentence_label, dtype=torch.long)
    return features


def check_tokenizer(tokenizer: BertTokenizer, model_vocab_size: int | None) -> None:
    """Refuse a tokenizer whose ids the model's embedding table (of `model_vocab_size` rows) cannot hold."""
    if model_vocab_size is not None and tokenizer.vocab_size > model_vocab_size:
        raise DataError(f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                        f"{model_vocab_size}: ids would index past the embedding table")


def create_examples_in_memory(documents: Iterable[Sequence[str]], tokenizer: BertTokenizer,
                              options: PretrainingOptions = PretrainingOptions(), *, epoch: int = 0,
                              model_vocab_size: int | None = None) -> list[dict[str, torch.Tensor]]:
    """`prepare_pretraining_data` without the disk: the same examples, as the model inputs that
    `PretrainingDataset(folder, epoch)[i]` gives, for small corpora, notebooks and tests."""
    check_tokenizer(tokenizer, model_vocab_size)
    masker = masker_for(tokenizer, options) if options.dynamic_masking else None
    return [example_features(example, masker, options.seed, epoch, index)
            for index, example in enumerate(generate_examples(documents, tokenizer, options))]
