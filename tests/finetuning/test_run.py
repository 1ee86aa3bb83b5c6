"""finetune() end to end on tiny seeded models and synthetic data: each task kind learns (loss falls, the task's
metric beats chance by a stated margin), runs are repeatable, the saved folder loads in minibert and in
transformers with the same logits, and bad input fails with one clear MinibertError.

The helpers here (a tiny checkpoint with its own vocabulary, synthetic task files) are shared with
test_predict.py and test_cli_finetune.py."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch

from minibert.config import BertConfig
from minibert.errors import CheckpointError, DataError, MinibertError
from minibert.model import BertForSequenceClassification, BertModel
from minibert.finetuning.run import DataSpec, FinetuneResult, finetune, split_off_validation
from minibert.tokenizer import SPECIAL_TOKENS, BertTokenizer
from minibert.training.reporting import MetricsLog

FILLERS = ("the", "a", "film", "movie", "was", "is", "plot", "actor", "scene", "story", "very", "quite", "and",
           "but", "it", "this", "then", "there", "of", "in")
POSITIVE, NEGATIVE = ("good", "great"), ("bad", "awful")
PEOPLE, SURNAMES, PLACES = ("alice", "bob", "carol", "dave"), ("smith", "jones"), ("paris", "london", "rome")
VOCAB = [*SPECIAL_TOKENS, *FILLERS, *POSITIVE, *NEGATIVE, *PEOPLE, *SURNAMES, *PLACES, "who", "?", "."]

# Small enough to train in about a second, big enough to learn these tasks.
TINY = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
FAST = dict(per_device_batch_size=16, learning_rate=2e-3, warmup_ratio=0.1, progress_bar=None, plot=False,
            log_every=1)


# -- helpers shared with the other fine-tuning tests ----------------------------------------------------------
def make_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A seeded tiny encoder saved with its tokenizer: what `finetune` starts from."""
    (folder).mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(token + "\n" for token in VOCAB), encoding="utf-8")
    torch.manual_seed(seed)
    BertModel(BertConfig(**TINY)).save_pretrained(folder)
    BertTokenizer.from_vocab(folder / "vocab.txt").save_pretrained(folder)
    return folder


def _fillers(rng: random.Random, low: int = 4, high: int = 9) -> list[str]:
    return [rng.choice(FILLERS) for _ in range(rng.randint(low, high))]


def _insert(words: list[str], rng: random.Random, inserted: list[str]) -> int:
    position = rng.randint(0, len(words))
    words[position:position] = inserted
    return position


def classification_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Sentiment by one signal word among fillers: "pos" with good/great, "neg" with bad/awful."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = _fillers(rng)
        _insert(words, rng, [rng.choice(POSITIVE if label == "pos" else NEGATIVE)])
        rows.append({"text": " ".join(words), "label": label, "source": rng.choice(["x", "y"])})
    return rows


def regression_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Score = positive minus negative signal words, from -2 to 2."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        signals = [rng.choice(POSITIVE + NEGATIVE) for _ in range(rng.randint(0, 2))]
        words = _fillers(rng)
        for signal in signals:
            _insert(words, rng, [signal])
        score = sum(signal in POSITIVE for signal in signals) - sum(signal in NEGATIVE for signal in signals)
        rows.append({"text": " ".join(words), "label": str(score)})
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_conll(path: Path, n: int, seed: int = 0) -> Path:
    """Sentences with a person (one or two words: B-PER I-PER) and sometimes a place (B-LOC) among fillers."""
    rng, lines = random.Random(seed), []
    for _ in range(n):
        words = _fillers(rng, 3, 7)
        tags = ["O"] * len(words)
        person = [rng.choice(PEOPLE)] + ([rng.choice(SURNAMES)] if rng.random() < 0.5 else [])
        at = _insert(words, rng, person)
        tags[at:at] = ["B-PER"] + ["I-PER"] * (len(person) - 1)
        if rng.random() < 0.5:
            at = _insert(words, rng, [rng.choice(PLACES)])
            tags[at:at] = ["B-LOC"]
        lines += [f"{word}\t{tag}" for word, tag in zip(words, tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def squad_json(n: int, seed: int = 0) -> dict:
    """"who is there ?" over fillers holding one name: the name is the answer."""
    rng, paragraphs = random.Random(seed), []
    for i in range(n):
        words = _fillers(rng, 5, 12)
        name = rng.choice(PEOPLE)
        at = _insert(words, rng, [name])
        context = " ".join(words)
        start = len(" ".join(words[:at])) + (1 if at else 0)
        paragraphs.append({"context": context, "qas": [{"id": f"q{i}", "question": "who is there ?",
                                                         "answers": [{"text": name, "answer_start": start}]}]})
    return {"version": "1.1", "data": [{"title": "synthetic", "paragraphs": paragraphs}]}


def write_squad(path: Path, n: int, seed: int = 0) -> Path:
    path.write_text(json.dumps(squad_json(n, seed)), encoding="utf-8")
    return path


def losses(result: FinetuneResult) -> list[float]:
    return [record["loss"] for record in MetricsLog.read(result.training.output_dir / "metrics.jsonl")]


# -- fixtures: one fine-tuned model per task kind, trained once for this module -------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_csv(folder / "sentiment.csv", classification_rows(320))
    write_csv(folder / "scores.csv", regression_rows(320))
    write_conll(folder / "ner.txt", 240)
    write_squad(folder / "squad.json", 240)
    return folder


def run(checkpoint: Path, task: str, train_file: Path, out: Path, **settings) -> FinetuneResult:
    return finetune(checkpoint, task, train_file, out, validation_fraction=0.2, **{**FAST, **settings})


@pytest.fixture(scope="module")
def classified(checkpoint, data_dir, tmp_path_factory) -> FinetuneResult:
    return run(checkpoint, "classification", data_dir / "sentiment.csv", tmp_path_factory.mktemp("cls"),
               num_epochs=6)


@pytest.fixture(scope="module")
def tagged(checkpoint, data_dir, tmp_path_factory) -> FinetuneResult:
    return run(checkpoint, "ner", data_dir / "ner.txt", tmp_path_factory.mktemp("ner"), num_epochs=6)


@pytest.fixture(scope="module")
def answered(checkpoint, data_dir, tmp_path_factory) -> FinetuneResult:
    return run(checkpoint, "qa", data_dir / "squad.json", tmp_path_factory.mktemp("qa"), num_epochs=6)


# -- each kind learns -----------------------------------------------------------------------------------------
def assert_learned(result: FinetuneResult, metric: str, above: float) -> None:
    curve = losses(result)
    first, last = sum(curve[:3]) / 3, sum(curve[-3:]) / 3  # three steps each side, as one batch is noisy
    assert last < 0.5 * first, f"{result.task}: training loss should halve, went {first:.3f} -> {last:.3f}"
    assert result.main_metric == metric, f"{result.task}: main metric should be {metric}, got {result.main_metric}"
    assert result.metrics[metric] > above, \
        f"{result.task}: validation {metric} {result.metrics[metric]:.3f} should beat {above} (chance is far below)"


def test_classification_learns_the_signal_word(classified):
    assert_learned(classified, "accuracy", above=0.5 + 0.3)  # chance 0.5
    assert {"accuracy", "macro_f1", "mcc", "f1", "loss"} <= set(classified.metrics), \
        f"classification should report accuracy, F1 and MCC: {sorted(classified.metrics)}"


def test_regression_learns_the_score(checkpoint, data_dir, tmp_path):
    result = run(checkpoint, "regression", data_dir / "scores.csv", tmp_path, num_epochs=6)
    assert_learned(result, "pearson", above=0.7)  # chance 0
    assert "spearman" in result.metrics, "regression should report Spearman too"
    assert result.labels is None, "regression has no label map"


def test_ner_learns_entities(tagged):
    assert_learned(tagged, "f1", above=0.6)  # entity-level F1; tagging all "O" scores 0
    assert tagged.labels == ["B-LOC", "B-PER", "I-PER", "O"], f"tags should be sorted: {tagged.labels}"


def test_qa_learns_to_point_at_the_name(answered):
    assert_learned(answered, "f1", above=0.6)  # ~1 in 10 context words is the answer
    assert "exact_match" in answered.metrics, "QA should report SQuAD exact match"


def test_same_seed_same_metrics(checkpoint, data_dir, tmp_path, classified):
    again = run(checkpoint, "classification", data_dir / "sentiment.csv", tmp_path, num_epochs=6)
    assert again.metrics == classified.metrics, "two runs with the same seed should give identical metrics"
    assert losses(again) == losses(classified), "two runs with the same seed should give identical losses"


# -- what is saved --------------------------------------------------------------------------------------------
def test_label_map_is_saved_in_config_and_label_map_json(classified):
    config = json.loads((classified.model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}, \
        f"config.json should carry the label map: {config['id2label']}"
    label_map = json.loads((classified.model_dir / "label_map.json").read_text())
    assert label_map["task"] == "classification" and label_map["labels"] == ["neg", "pos"], label_map
    assert (classified.model_dir / "tokenizer.json").is_file(), "the tokenizer should be saved with the model"


@pytest.mark.parametrize("fixture, auto_class", [("classified", "AutoModelForSequenceClassification"),
                                                 ("tagged", "AutoModelForTokenClassification"),
                                                 ("answered", "AutoModelForQuestionAnswering")])
def test_saved_model_gives_the_same_logits_in_minibert_and_transformers(fixture, auto_class, request):
    transformers = pytest.importorskip("transformers")
    result: FinetuneResult = request.getfixturevalue(fixture)
    from minibert.finetuning.kinds import task_kind
    ours = task_kind(result.task).model_class.from_pretrained(result.model_dir).eval()
    theirs = getattr(transformers, auto_class).from_pretrained(result.model_dir, attn_implementation="eager").eval()
    tokenizer = BertTokenizer.from_pretrained(result.model_dir)
    batch = tokenizer(["alice was very good in paris", "the plot is bad"], ["who is there ?", "who ?"])
    with torch.no_grad():
        a, b = ours(**batch), theirs(**batch)
    names = ["start_logits", "end_logits"] if result.task == "qa" else ["logits"]
    for name in names:
        mask = batch["attention_mask"].bool()
        x, y = getattr(a, name), getattr(b, name)
        if x.dim() > 2 or name != "logits":  # per-token outputs: compare real tokens only
            x, y = x[mask], y[mask]
        diff = (x - y).abs().max().item()
        assert diff <= 1e-5, f"{result.task}: {name} differ by {diff:.2e} between minibert and transformers"
    if result.task == "classification":
        assert theirs.config.id2label == {0: "neg", 1: "pos"}, "transformers should read the label map"


def test_best_checkpoint_is_saved_when_it_comes_before_the_last_step(checkpoint, data_dir, tmp_path):
    # Accuracy reaches its top before the end; later evaluations can only tie it, and a tie keeps the earlier one.
    result = run(checkpoint, "classification", data_dir / "sentiment.csv", tmp_path, num_epochs=6, eval_every=8)
    evaluations = {r["step"]: r for r in MetricsLog.read(tmp_path / "metrics.jsonl") if "eval_accuracy" in r}
    best_step = result.training.best_step
    assert best_step < result.training.steps, f"test setup: the best step {best_step} should come before the last"
    assert result.model_dir == tmp_path / "best", f"the best model should be used, got {result.model_dir}"
    assert result.metrics["accuracy"] == evaluations[best_step]["eval_accuracy"] == \
        max(r["eval_accuracy"] for r in evaluations.values()), "the reported metrics should be the best step's"
    saved = BertForSequenceClassification.from_pretrained(result.model_dir).state_dict()
    kept = BertForSequenceClassification.from_pretrained(tmp_path / "checkpoints" / f"step-{best_step:06d}")
    assert all(torch.equal(saved[name], tensor) for name, tensor in kept.state_dict().items()), \
        "best/ should hold the best step's weights"
    assert (result.model_dir / "label_map.json").is_file() and (result.model_dir / "vocab.txt").is_file(), \
        "best/ should be complete: tokenizer and label map"
    check_model_cards(result, checkpoint, data_dir / "sentiment.csv")


def check_model_cards(result, checkpoint, train_file):
    """final/ and best/ carry a README.md model card: base model, data, labels, their own metrics, how they were
    made, the machine the metrics were measured on."""
    import minibert
    from minibert.plumbing.machine import machine_facts
    final, best = (result.training.output_dir / name / "README.md" for name in ("final", "best"))
    for card, step, metrics in ((final, result.training.steps, result.training.final_metrics),
                                (best, result.training.best_step, result.metrics)):
        text = card.read_text(encoding="utf-8")
        assert text.startswith("---\nlibrary_name: transformers\npipeline_tag: text-classification\n"), text[:120]
        assert f"base_model: {checkpoint}" in text and f"fine-tuned from `{checkpoint}`" in text
        assert f"minibert {minibert.__version__}" in text, "the card should name the minibert version"
        assert f"from `{train_file}`" in text and f"{result.num_validation} held out for validation" in text
        assert "Labels, in id order: `neg`, `pos`" in text, "the card should list the labels"
        for metric, value in metrics.items():
            assert f"| {metric} | {value:.4f} |" in text, f"{card}: {metric} should be {value:.4f}"
        assert f"{step} optimizer steps" in text and "learning_rate=" in text
        assert f"capability {machine_facts().cpu_capability}" in text, "figures must name the machine"
    assert f"at step {result.training.best_step}, the best accuracy" in best.read_text(encoding="utf-8")


def test_early_stopping_stops_the_run(checkpoint, data_dir, tmp_path):
    result = run(checkpoint, "classification", data_dir / "sentiment.csv", tmp_path, num_epochs=20, eval_every=2,
                 early_stopping_patience=2, learning_rate=1e-6)
    assert result.training.stopped_early, "a run whose metric stalls should stop early"
    assert result.training.steps < 20 * 16, f"early stopping should cut the run short: {result.training.steps} steps"


# -- data handling --------------------------------------------------------------------------------------------
def test_split_is_seeded_and_disjoint():
    examples = list(range(100))
    train, held_out = split_off_validation(examples, 0.1, seed=3)
    assert len(held_out) == 10 and sorted(train + held_out) == examples, "90/10 split should partition the data"
    assert split_off_validation(examples, 0.1, seed=3) == (train, held_out), "same seed, same split"
    assert split_off_validation(examples, 0.1, seed=4)[1] != held_out, "another seed should hold out others"


def test_where_selects_rows(checkpoint, data_dir, tmp_path):
    result = run(checkpoint, "classification", data_dir / "sentiment.csv", tmp_path, max_steps=1,
                 data=DataSpec(where={"source": "x"}))
    expected = sum(row["source"] == "x" for row in classification_rows(320))
    assert result.num_train + result.num_validation == expected, "where={'source': 'x'} should keep only those rows"


def test_glue_files_use_the_tasks_columns_labels_and_metric(checkpoint, tmp_path):
    # CoLA's train/dev files have no header: source, label, original label, sentence.
    rows = classification_rows(64)
    lines = [f"src\t{int(row['label'] == 'pos')}\t\t{row['text']}" for row in rows]
    (tmp_path / "train.tsv").write_text("\n".join(lines[:48]) + "\n")
    (tmp_path / "dev.tsv").write_text("\n".join(lines[48:]) + "\n")
    result = run(checkpoint, "classification", tmp_path / "train.tsv", tmp_path / "out", max_steps=2,
                 validation_data=tmp_path / "dev.tsv", data=DataSpec(glue_task="cola"))
    assert result.main_metric == "mcc" and "mcc" in result.metrics, "CoLA should be ranked by MCC"
    assert result.labels == ["0", "1"] and result.num_validation == 16, "GLUE labels and the dev file should be used"


def test_starts_from_a_checkpoint_with_pretraining_heads(data_dir, tmp_path):
    """What minibert's pretraining saves: BertForPreTraining with MLM/NSP heads, which fine-tuning leaves out."""
    from minibert.model import BertForPreTraining
    folder = make_checkpoint(tmp_path / "pretrained")
    torch.manual_seed(0)
    BertForPreTraining(BertConfig(**TINY)).save_pretrained(folder)
    result = run(folder, "classification", data_dir / "sentiment.csv", tmp_path / "out", max_steps=2)
    model = BertForSequenceClassification.from_pretrained(result.model_dir)
    assert not model.load_report.newly_initialised and not model.load_report.unused, \
        f"the fine-tuned folder should hold exactly a classifier: {model.load_report.summary()}"


def test_hub_dataset_needs_the_datasets_package(checkpoint, tmp_path):
    if importlib.util.find_spec("datasets") is not None:
        pytest.skip("datasets is installed; this test covers its absence")
    with pytest.raises(DataError, match="needs the `datasets` package"):
        finetune(checkpoint, "classification", "hub:rotten_tomatoes", tmp_path)


# -- bad input: one clear error each --------------------------------------------------------------------------
def test_unknown_label_in_validation_names_file_and_line(checkpoint, data_dir, tmp_path):
    dev = write_csv(tmp_path / "dev.csv", [{"text": "good film", "label": "pos"}, {"text": "meh", "label": "meh"}])
    with pytest.raises(DataError, match=r"dev\.csv:3: label 'meh' is not among the training labels \(neg, pos\)"):
        finetune(checkpoint, "classification", data_dir / "sentiment.csv", tmp_path / "out", validation_data=dev)


def test_missing_column(checkpoint, data_dir, tmp_path):
    with pytest.raises(DataError, match=r"sentiment\.csv:2: no column 'sentence' \(columns: text, label, source\)"):
        finetune(checkpoint, "classification", data_dir / "sentiment.csv", tmp_path,
                 data=DataSpec(text_column="sentence"))


def test_empty_dataset(checkpoint, tmp_path):
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(DataError, match=r"empty\.csv: no examples"):
        finetune(checkpoint, "classification", tmp_path / "empty.csv", tmp_path / "out")


def test_head_with_another_label_count_names_both(checkpoint, data_dir, tmp_path):
    three = tmp_path / "three-labels"
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(**TINY, id2label={0: "a", 1: "b", 2: "c"})).save_pretrained(three)
    BertTokenizer.from_pretrained(checkpoint).save_pretrained(three)
    with pytest.raises(CheckpointError, match=r"classifier head has 3 labels \(a, b, c\) but the training data has "
                                              r"2 \(neg, pos\)"):
        finetune(three, "classification", data_dir / "sentiment.csv", tmp_path / "out")


def test_qa_answer_not_in_context(checkpoint, tmp_path):
    squad = squad_json(3)
    squad["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["text"] = "zebra"
    (tmp_path / "bad.json").write_text(json.dumps(squad))
    with pytest.raises(DataError, match=r"question q1: answer 'zebra' does not occur in its context"):
        finetune(checkpoint, "qa", tmp_path / "bad.json", tmp_path / "out")


def test_unknown_task_and_training_setting(checkpoint, data_dir, tmp_path):
    with pytest.raises(MinibertError, match="unknown task 'sentiment'"):
        finetune(checkpoint, "sentiment", data_dir / "sentiment.csv", tmp_path)
    with pytest.raises(MinibertError, match="unexpected keyword argument 'epochs'"):
        finetune(checkpoint, "classification", data_dir / "sentiment.csv", tmp_path, epochs=3)
