"""`minibert.pretraining.run` end to end on a tiny synthetic corpus: the model learns it, the exported folder is a
transformers checkpoint with the same logits, prepared data is reused, and held-out documents never train."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from minibert.config import BertConfig
from minibert.pretraining import PretrainingOptions, iter_documents, train_wordpiece
from minibert.model import BertForPreTraining
from minibert.pretraining.run import is_held_out, prepare_data, pretrain, split_documents
from minibert.tokenizer import BertTokenizer
from minibert.training import TrainingArguments

# A corpus with little to learn but something to: each animal always eats the same food, so a masked food (or
# animal) is predictable from the rest of its sentence, while the time of day is a guess among three.
FOODS = {"cat": "fish", "dog": "meat", "cow": "grass", "bird": "seeds", "horse": "hay", "bear": "honey"}
TIMES = ("morning", "evening", "night")
OPTIONS = PretrainingOptions(max_seq_length=32, dupe_factor=5)
STEPS = 300


def animal_documents(count: int = 40, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    documents = []
    for _ in range(count):
        animal = rng.choice(sorted(FOODS))
        sentences = [f"The {animal} eats {FOODS[animal]} every {rng.choice(TIMES)}.", f"Then the {animal} sleeps.",
                     f"The {animal} likes {FOODS[animal]} best."]
        documents.append(sentences[:rng.randint(2, 3)])
    return documents


def tiny_config(vocab_size: int) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The documents in Google's format: a sentence per line, a blank line between documents."""
    path = tmp_path_factory.mktemp("corpus") / "animals.txt"
    path.write_text("\n\n".join("\n".join(document) for document in animal_documents()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer(corpus) -> BertTokenizer:
    return train_wordpiece(iter_documents(corpus), vocab_size=120)


def training_args(output_dir: Path, **overrides) -> TrainingArguments:
    settings = dict(max_steps=STEPS, per_device_batch_size=16, learning_rate=5e-3, warmup_steps=10, eval_every=100,
                    save_every=100, log_every=5, progress_bar=None, plot=False)
    return TrainingArguments(str(output_dir), **{**settings, **overrides})


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus, tokenizer):
    """One run of STEPS steps; returns (output_dir, TrainResult)."""
    output_dir = tmp_path_factory.mktemp("run")
    result = pretrain(training_args(output_dir), tokenizer, corpus=corpus, model=tiny_config(tokenizer.vocab_size),
                      eval_fraction=0.2, options=OPTIONS)
    return output_dir, result


def records(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_model_learns_the_corpus(run, tokenizer):
    output_dir, result = run
    assert result.steps == STEPS, f"the run stopped at step {result.steps}, not {STEPS}"
    mlm = [r["mlm_loss"] for r in records(output_dir)]
    assert mlm[0] > 3.5, f"an untrained model should be near ln(V) = {torch.tensor(tokenizer.vocab_size).log():.2f}, " \
                         f"got {mlm[0]:.2f}"
    late = sum(mlm[-10:]) / 10
    assert late < 1.2, f"training MLM loss should fall below 1.2 by step {STEPS}, averages {late:.2f} at the end"
    evaluations = [r for r in records(output_dir) if "eval_mlm_loss" in r]
    assert [r["step"] for r in evaluations] == [100, 200, 300], "evaluations every 100 steps expected"
    assert evaluations[-1]["eval_mlm_loss"] < evaluations[0]["eval_mlm_loss"], "held-out MLM loss should fall"
    assert result.final_metrics["nsp_accuracy"] > 0.6, f"NSP is easy here, got {result.final_metrics}"


def test_final_folder_is_a_transformers_checkpoint(run):
    transformers = pytest.importorskip("transformers")
    final = run[0] / "final"
    theirs = transformers.BertForPreTraining.from_pretrained(str(final), attn_implementation="eager").eval()
    ours = BertForPreTraining.from_pretrained(final).eval()
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(str(final))
    texts = ["the cat eats [MASK] every morning.", "then the [MASK] sleeps."]
    batch = their_tokenizer(texts, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == BertTokenizer.from_pretrained(final)(texts)["input_ids"].tolist(), \
        "transformers' tokenizer reads the saved tokenizer differently from minibert's"
    with torch.no_grad():
        expected, got = theirs(**batch), ours(**batch)
    real = batch["attention_mask"].bool()
    mlm_diff = (expected.prediction_logits[real] - got.prediction_logits[real]).abs().max().item()
    nsp_diff = (expected.seq_relationship_logits - got.seq_relationship_logits).abs().max().item()
    assert mlm_diff <= 1e-5, f"MLM logits differ from transformers' by {mlm_diff:.2e}"
    assert nsp_diff <= 1e-5, f"NSP logits differ from transformers' by {nsp_diff:.2e}"


def test_final_folder_has_a_model_card(run, corpus):
    output_dir, result = run
    text = (output_dir / "final" / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\nlibrary_name: transformers\npipeline_tag: fill-mask\n"), text[:100]
    assert "base_model" not in text and "pretrained from scratch" in text, "a model from scratch has no base model"
    counts = json.loads((output_dir / "data" / "train" / "meta.json").read_text())["counts"]
    assert f"{counts['examples']:,} training examples" in text and f"`{corpus}`" in text, "the card names its data"
    for metric in ("mlm_accuracy", "nsp_accuracy"):
        assert f"| {metric} | {result.final_metrics[metric]:.4f} |" in text, f"the card should give {metric}"
    assert f"{STEPS} optimizer steps" in text and "Measured on" in text


def test_a_second_call_reuses_the_prepared_data(run, corpus, tokenizer):
    output_dir, _ = run
    meta = output_dir / "data" / "train" / "meta.json"
    written = meta.stat().st_mtime_ns
    # Resuming a finished run trains no further steps: it only prepares (or reuses) data and re-exports the model.
    result = pretrain(training_args(output_dir, resume=True), tokenizer, corpus=corpus,
                      model=tiny_config(tokenizer.vocab_size), eval_fraction=0.2, options=OPTIONS)
    assert result.steps == STEPS, "resuming a finished run should not train further"
    assert meta.stat().st_mtime_ns == written, "identical inputs should reuse data/train, not prepare it again"


def test_changed_options_prepare_the_data_again(tmp_path, corpus, tokenizer):
    first = prepare_data([corpus], tokenizer, tmp_path, OPTIONS, eval_fraction=0.2)
    written = (first.train / "meta.json").stat().st_mtime_ns
    assert prepare_data([corpus], tokenizer, tmp_path, OPTIONS, eval_fraction=0.2) == first
    assert (first.train / "meta.json").stat().st_mtime_ns == written, "identical inputs should be reused"
    longer = PretrainingOptions(max_seq_length=48, dupe_factor=1)
    prepare_data([corpus], tokenizer, tmp_path, longer, eval_fraction=0.2)
    stored = json.loads((first.train / "meta.json").read_text())["options"]
    assert stored["max_seq_length"] == 48, "new options should replace the earlier preparation"


def test_held_out_documents_never_train():
    documents = [[f"Document {i} starts here.", "It ends here."] for i in range(400)]
    documents += documents[:100]  # duplicates, as real corpora have
    train = list(split_documents(documents, False, 0.25, seed=7))
    held_out = list(split_documents(documents, True, 0.25, seed=7))
    assert len(train) + len(held_out) == len(documents), "every document should land on exactly one side"
    assert not {tuple(d) for d in train} & {tuple(d) for d in held_out}, "a text appears on both sides"
    distinct = len({tuple(d) for d in held_out})
    assert 60 <= distinct <= 140, f"about 25% of the 400 distinct texts should be held out, got {distinct}"
    assert list(split_documents(documents[::-1], True, 0.25, seed=7)) == held_out[::-1], \
        "the split should depend on a document's text, not its position"
    assert list(split_documents(documents, True, 0.25, seed=8)) != held_out, "another seed should split otherwise"


def test_time_budget_sets_the_number_of_steps(tmp_path, corpus, tokenizer):
    result = pretrain(training_args(tmp_path, max_steps=100_000, eval_every=0, save_every=0), tokenizer,
                      corpus=corpus, model=tiny_config(tokenizer.vocab_size), options=OPTIONS, eval_fraction=0.2,
                      max_minutes=0.02)
    assert 1 <= result.steps < 100_000, f"a 1.2 s budget should stop well before the cap, ran {result.steps} steps"
    assert (tmp_path / "final" / "vocab.txt").is_file(), "the final folder should hold the tokenizer"


def test_time_budget_with_auto_precision_probes_once(tmp_path, corpus, tokenizer, capsys):
    result = pretrain(training_args(tmp_path, max_steps=100_000, eval_every=0, save_every=0, precision="auto"),
                      tokenizer, corpus=corpus, model=tiny_config(tokenizer.vocab_size), options=OPTIONS,
                      eval_fraction=0.2, max_minutes=0.02)
    choices = [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision auto -> ")]
    assert len(choices) == 1, f"the budget's timing and the run should share one probe: {choices}"
    assert 1 <= result.steps < 100_000, f"a 1.2 s budget should stop well before the cap, ran {result.steps} steps"


def test_the_distributional_initialisation_runs_end_to_end(tmp_path, corpus, tokenizer):
    """init="distributional" counts co-occurrences in the prepared training data and starts the word embeddings
    from their PPMI vectors (the saved model, after one step at a negligible learning rate, still points along
    them)."""
    from minibert.pretraining.cooccurrence import ppmi_vectors
    from minibert.pretraining.shards import PretrainingDataset
    result = pretrain(training_args(tmp_path, max_steps=1, eval_every=0, save_every=0, learning_rate=1e-9),
                      tokenizer, corpus=corpus, model=tiny_config(tokenizer.vocab_size), options=OPTIONS,
                      eval_fraction=0.2, init="distributional")
    words = BertForPreTraining.from_pretrained(result.output_dir / "final").bert.embeddings.word_embeddings.weight
    counts = PretrainingDataset(tmp_path / "data" / "train").cooccurrence_counts()
    expected = ppmi_vectors(*counts, vocab_size=tokenizer.vocab_size, width=32)
    seen = expected.norm(dim=1) > 0
    assert seen.sum() > 20, "the corpus's words should have co-occurrence vectors"
    cosine = torch.nn.functional.cosine_similarity(words[seen], expected[seen], dim=1)
    assert cosine.min() > 0.999, f"word embeddings should start along the corpus's PPMI vectors (min {cosine.min():.4f})"
