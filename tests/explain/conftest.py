"""Models explain is tested on: the real all-MiniLM-L6-v2 (no heads), a tiny BERT that `minibert pretrain` wrote
(masked-LM and NSP heads), a classifier fine-tuned from it, and small seeded models of every head class."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from minibert.cli.main import main
from minibert.explain.loading import LoadedModel, load_for_explain
from minibert.tokenizer import SPECIAL_TOKENS, BertTokenizer

# A small corpus with the words the tests ask about, one document per line.
SENTENCES = ["the capital of france is paris.", "the capital of italy is rome.", "paris is a city in france.",
             "rome is a city in italy.", "the film was good and the actors were great.",
             "the film was bad and the plot was awful.", "tokenization splits words into pieces."]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="session")
def minilm(minilm_dir) -> LoadedModel:
    return load_for_explain(minilm_dir)


@pytest.fixture(scope="session")
def pretrained_dir(tmp_path_factory) -> Path:
    """`minibert train-tokenizer` then `minibert pretrain` for 20 steps: a folder with MLM and NSP heads."""
    root = tmp_path_factory.mktemp("pretrained")
    rng = random.Random(0)
    corpus = root / "docs.txt"
    corpus.write_text("\n".join(" ".join(rng.sample(SENTENCES, 3)) for _ in range(40)) + "\n", encoding="utf-8")
    assert main(["train-tokenizer", str(corpus), "--vocab-size", "120", "--output", str(root / "vocab")]) == 0
    vocab_size = len((root / "vocab" / "vocab.txt").read_text(encoding="utf-8").splitlines())
    (root / "config.json").write_text(json.dumps({**TINY, "vocab_size": vocab_size}))
    assert main(["pretrain", "--corpus", str(corpus), "--tokenizer", str(root / "vocab"), "--config",
                 str(root / "config.json"), "--output-dir", str(root / "run"), "--max-seq-length", "32",
                 "--dupe-factor", "1", "--eval-fraction", "0", "--batch-size", "8", "--max-steps", "20",
                 "--lr", "1e-3", "--no-progress"]) == 0, "the tiny pretraining run should succeed"
    return root / "run" / "final"


@pytest.fixture(scope="session")
def classifier_dir(pretrained_dir, tmp_path_factory) -> Path:
    """The pretrained tiny model fine-tuned (library API, a few steps) to tell "good"/"great" from "bad"/"awful"."""
    from minibert.finetuning.run import finetune
    root = tmp_path_factory.mktemp("classifier")
    rng = random.Random(0)
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(64):
            label = rng.choice(["negative", "positive"])
            word = rng.choice(["good", "great"] if label == "positive" else ["bad", "awful"])
            writer.writerow([f"the film was {word}", label])
    result = finetune(pretrained_dir, "classification", root / "train.csv", root / "run", validation_fraction=0.0,
                      max_length=32, num_epochs=2, per_device_batch_size=16, learning_rate=2e-3,
                      progress_bar=False, plot=False)
    return result.model_dir


def tiny_vocab_tokenizer(folder: Path) -> BertTokenizer:
    words = ["the", "capital", "of", "france", "is", "paris", "rome", ".", "a", "city", "film", "good", "bad"]
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in [*SPECIAL_TOKENS, *words]), encoding="utf-8")
    tokenizer = BertTokenizer.from_vocab(folder / "vocab.txt")
    tokenizer.backend.add_special_tokens(list(SPECIAL_TOKENS))  # so that "[MASK]" in a text is one token
    return tokenizer


@pytest.fixture
def seeded_model(tmp_path, make_config, randomize):
    """seeded_model(class_name, **config) -> LoadedModel: a tiny model of that class with seeded random weights
    (every head present) and a 18-token vocabulary."""
    from minibert import model as M

    def build(class_name: str, **config) -> LoadedModel:
        tokenizer = tiny_vocab_tokenizer(tmp_path)
        settings = dict(vocab_size=tokenizer.vocab_size, attn_implementation="sdpa", **config)
        model = getattr(M, class_name)(make_config("h36x3", **settings))
        randomize(model, seed=0)
        labels = list(model.config.labels().values()) if hasattr(model, "classifier") else None
        return LoadedModel(f"seeded {class_name}", model.eval(), tokenizer, labels, [])
    return build
