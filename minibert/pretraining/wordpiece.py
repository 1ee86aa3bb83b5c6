"""Train a WordPiece vocabulary from a corpus (BERT 2018, section 3: "WordPiece embeddings with a 30,000
token vocabulary"), with the `tokenizers` library's trainer and BERT's own text pipeline."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from tokenizers import trainers

from minibert.errors import DataError
from minibert.tokenizer import SPECIAL_TOKENS, BertTokenizer


def train_wordpiece(documents: Iterable[Sequence[str]], vocab_size: int, lowercase: bool = True,
                    min_frequency: int = 2) -> BertTokenizer:
    """Learn a vocabulary of at most `vocab_size` tokens from documents (lists of sentences).

    The text pipeline is BERT's (`BertTokenizer.wordpiece_backend`, the one `BertTokenizer.from_vocab` uses), so
    the result reads text exactly like `from_vocab` would with the same vocab.txt. The trainer numbers the
    special tokens first, in list order, so [PAD] is id 0 as in BERT's vocabulary (where [UNK], [CLS], [SEP],
    [MASK] are 100-103; here they are 1-4). Words seen fewer than `min_frequency` times get no token of
    their own and are spelled with pieces. A small corpus can give fewer tokens than asked for.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise DataError(f"train_wordpiece: vocab_size {vocab_size} leaves no room beside "
                        f"{len(SPECIAL_TOKENS)} special tokens")
    backend = BertTokenizer.wordpiece_backend(None, lowercase)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##",
                                        show_progress=False)  # its bars leave blank lines in logs
    counter = _SentenceCounter(documents)
    backend.train_from_iterator(counter, trainer)
    if counter.sentences == 0:
        raise DataError("empty corpus: no sentences to train a tokenizer on")
    BertTokenizer.add_bert_template(backend)
    return BertTokenizer(backend)


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
