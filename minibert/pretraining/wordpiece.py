"""Train a WordPiece vocabulary from a corpus (BERT 2018, section 3: "WordPiece embeddings with a 30,000
token vocabulary"), with the `tokenizers` library's trainer and BERT's own text pipeline.

The same corpus gives the same vocabulary, piece for piece and id for id, in every run. The trainer alone does
not: it numbers each `##` continuation character when it first meets it while walking a hash map, whose order
changes from run to run, and those numbers break ties between equally frequent merges, so two runs learn
different pieces in a different order (huggingface/tokenizers#1794; 1,276 of 16,384 lines of vocab.txt differed
between two runs on the movie reviews, and with them the model's embedding rows and every figure trained on
it). Naming every continuation character up front, in sorted order, fixes their numbers and with them the ties.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable, Iterator, Sequence

from tokenizers import trainers

from minibert.errors import DataError
from minibert.tokenizer import SPECIAL_TOKENS, BertTokenizer


def train_wordpiece(documents: Iterable[Sequence[str]], vocab_size: int, lowercase: bool = True,
                    min_frequency: int = 2) -> BertTokenizer:
    """Learn a vocabulary of at most `vocab_size` tokens from documents (lists of sentences), read twice (a
    one-pass iterator is held in memory for it; pass a list or an object whose `__iter__` starts over).

    The text pipeline is BERT's (`BertTokenizer.wordpiece_backend`, the one `BertTokenizer.from_vocab` uses), so
    the result reads text exactly like `from_vocab` would with the same vocab.txt. The trainer numbers the
    special tokens first, in list order, so [PAD] is id 0 as in BERT's vocabulary (where [UNK], [CLS], [SEP],
    [MASK] are 100-103; here they are 1-4). Words seen fewer than `min_frequency` times get no token of
    their own and are spelled with pieces. A small corpus can give fewer tokens than asked for.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise DataError(f"train_wordpiece: vocab_size {vocab_size} leaves no room beside "
                        f"{len(SPECIAL_TOKENS)} special tokens")
    if iter(documents) is documents:  # a one-pass iterator: the corpus is read twice below
        documents = list(documents)
    backend = BertTokenizer.wordpiece_backend(None, lowercase)
    continuations = continuation_pieces(documents, backend)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS) + continuations,
                                        continuing_subword_prefix="##",
                                        show_progress=False)  # its bars leave blank lines in logs
    counter = _SentenceCounter(documents)
    backend.train_from_iterator(counter, trainer)
    if counter.sentences == 0:
        raise DataError("empty corpus: no sentences to train a tokenizer on")
    # Rebuilt from the learnt vocabulary alone, as from_vocab reads a vocab.txt: the continuation pieces were
    # special to the trainer only (a special token is never split and is dropped when decoding).
    learnt = BertTokenizer.wordpiece_backend(backend.get_vocab(), lowercase)
    learnt.add_special_tokens(list(SPECIAL_TOKENS))
    BertTokenizer.add_bert_template(learnt)
    return BertTokenizer(learnt)


def continuation_pieces(documents: Iterable[Sequence[str]], backend) -> list[str]:
    """`##c` for every character c the normalised corpus holds that can continue a word, sorted: the trainer's
    alphabet of continuations, named before training so that its numbering is fixed. Punctuation and CJK
    characters are words of their own for BERT's pre-tokeniser, whitespace separates words: none continues one."""
    characters = set()
    for document in documents:
        for sentence in document:
            characters.update(sentence)
    normalised = {piece for character in characters for piece in backend.normalizer.normalize_str(character)}
    return [f"##{character}" for character in sorted(normalised) if can_continue_a_word(character)]


def can_continue_a_word(character: str) -> bool:
    """What BERT's pre-tokeniser (BertPreTokenizer: split on whitespace, isolate punctuation; CJK characters are
    spaced out by the normaliser) can leave inside a word, after the first character."""
    if character.isspace() or unicodedata.category(character).startswith(("P", "C", "Z")):
        return False
    code = ord(character)
    ascii_punctuation = 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
    cjk = (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
           or 0x2A700 <= code <= 0x2CEAF or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F)
    return not (ascii_punctuation or cjk)


class Reread:
    """Documents read afresh by each pass over them (`make()` returns a new iterator): a corpus on disk given to
    train_wordpiece without holding it in memory."""

    def __init__(self, make):
        self.make = make

    def __iter__(self) -> Iterator[Sequence[str]]:
        return iter(self.make())


class _SentenceCounter:
    """Feeds the trainer one sentence at a time, counting them, so an empty corpus is caught."""

    def __init__(self, documents: Iterable[Sequence[str]]):
        self.documents = documents
        self.sentences = 0

    def __iter__(self) -> Iterator[str]:
        for document in self.documents:
            for sentence in document:
                self.sentences += 1
                yield sentence
