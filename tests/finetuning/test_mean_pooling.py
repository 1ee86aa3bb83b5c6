"""The sequence head's mean pooling (config.classifier_pooling "mean"): it reads the masked mean of the last layer,
padding changes nothing, it saves and loads, `finetune(pooling=...)` sets it and refuses to change a trained head,
`predict` uses it, and the lines of transformers the saved folder's README.md gives reproduce its logits (while
transformers' own BertForSequenceClassification does not, as the README says)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minibert.cli.main import main
from minibert.config import BertConfig
from minibert.errors import CheckpointError, ConfigError, MinibertError
from minibert.finetuning.mean_pooling import transformers_recipe
from minibert.finetuning.predict import Predictor
from minibert.finetuning.run import finetune
from minibert.model import BertForSequenceClassification
from minibert.tokenizer import BertTokenizer

from .test_run import FAST, TINY, classification_rows, make_checkpoint, write_csv

TEXTS = ["the film was very good", "bad", "this plot is awful and the actor is quite bad , then it ends"]


def mean_head(seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(**{**TINY, "classifier_pooling": "mean", **overrides})).eval()


def padded_batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    input_ids = torch.randint(5, TINY["vocab_size"], (3, 9))
    attention_mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5, [1] * 7 + [0] * 2])
    return {"input_ids": input_ids * attention_mask, "attention_mask": attention_mask}


@pytest.mark.parametrize("unpad", [True, False])
def test_mean_head_reads_the_masked_mean_of_the_last_layer(unpad):
    model, batch = mean_head(unpad=unpad), padded_batch()
    assert model.bert.pooler is None, "a mean head has no pooler (nothing would train it)"
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.bert(**batch).last_hidden_state
    lengths = batch["attention_mask"].sum(1)
    by_hand = torch.stack([hidden[i, :n].mean(0) for i, n in enumerate(lengths.tolist())])
    expected = model.classifier(by_hand)
    assert (logits - expected).abs().max() < 1e-6, "logits should be the classifier on the mean of the real tokens"


def test_padding_does_not_change_a_mean_heads_logits():
    model, batch = mean_head(), padded_batch()
    with torch.no_grad():
        together = model(**batch).logits
        alone = torch.cat([model(batch["input_ids"][i:i + 1, :n]).logits
                           for i, n in enumerate(batch["attention_mask"].sum(1).tolist())])
    assert (together - alone).abs().max() < 1e-5, "a sentence's logits should not depend on the padding beside it"


def test_mean_head_saves_and_loads(tmp_path):
    model, batch = mean_head(), padded_batch()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["classifier_pooling"] == "mean", "config.json should say the head reads the mean"
    assert not [name for name in load_file(tmp_path / "model.safetensors") if "pooler" in name], \
        "a mean head's folder should hold no pooler weights"
    again = BertForSequenceClassification.from_pretrained(tmp_path)
    assert again.config.classifier_pooling == "mean" and again.bert.pooler is None, "from_pretrained lost the pooling"
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits), "reloaded logits should be identical"


def test_an_unknown_pooling_is_refused():
    with pytest.raises(ConfigError, match="classifier_pooling must be one of cls, mean, got 'max'"):
        BertConfig(**TINY, classifier_pooling="max")


# -- fine-tuning, predict and transformers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "sentiment.csv", classification_rows(320))


@pytest.fixture(scope="module")
def mean_folder(tmp_path_factory, sentiment) -> Path:
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("tiny"))
    result = finetune(checkpoint, "classification", sentiment, tmp_path_factory.mktemp("mean"), num_epochs=6,
                      validation_fraction=0.2, max_length=24, pooling="mean", **FAST)
    assert result.metrics["accuracy"] > 0.8, f"a mean head should learn the signal word: {result.metrics}"
    return result.model_dir


def minibert_logits(folder: Path, texts: list[str], max_length: int = 24) -> torch.Tensor:
    model = BertForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        return model(**BertTokenizer.from_pretrained(folder)(texts, max_length=max_length)).logits


def test_finetune_with_mean_pooling_saves_a_mean_head_that_predict_uses(mean_folder):
    predictor = Predictor.load(mean_folder)
    assert predictor.model.config.classifier_pooling == "mean" and predictor.model.bert.pooler is None, \
        "predict should build the head the folder was trained with"
    labels = [result["label"] for result in predictor.predict([{"text": "a great film"}, {"text": "awful"}])]
    assert labels == ["pos", "neg"], f"the mean head should predict the signal word: {labels}"
    card = (mean_folder / "README.md").read_text()
    assert "mean of the last layer's real tokens" in card and "AutoModel.from_pretrained" in card, \
        "the folder's model card should say it reads the mean, and give the transformers recipe"


def test_the_readmes_transformers_recipe_gives_miniberts_logits(mean_folder):
    pytest.importorskip("transformers")
    recipe = transformers_recipe(24)
    assert recipe in (mean_folder / "README.md").read_text(), "the model card should hold the recipe the test runs"
    namespace = {"folder": str(mean_folder), "texts": TEXTS}
    exec(recipe, namespace)  # the README's lines, as a user runs them
    diff = (namespace["logits"] - minibert_logits(mean_folder, TEXTS)).abs().max().item()
    assert diff <= 1e-5, f"the transformers recipe's logits differ from minibert's by {diff:.2e}"


def test_transformers_sequence_classifier_cannot_read_a_mean_head(mean_folder, caplog):
    """What the README says transformers' own class does: a random pooler on [CLS], with its warning."""
    transformers = pytest.importorskip("transformers")
    verbosity = transformers.utils.logging.get_verbosity()  # `minibert parity` (an earlier test) sets it to errors
    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            theirs = transformers.AutoModelForSequenceClassification.from_pretrained(mean_folder).eval()
    finally:
        transformers.utils.logging.disable_propagation()
        transformers.utils.logging.set_verbosity(verbosity)
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "newly initialized" in warned and "bert.pooler.dense" in warned, \
        f"transformers should warn that the pooler is new: {warned!r}"
    with torch.no_grad():
        their_logits = theirs(**BertTokenizer.from_pretrained(mean_folder)(TEXTS, max_length=24)).logits
    diff = (their_logits - minibert_logits(mean_folder, TEXTS)).abs().max().item()
    assert diff > 1e-3, "transformers' BertForSequenceClassification should not reproduce a mean head (it has none)"


def test_changing_a_trained_heads_pooling_is_refused(mean_folder, sentiment, tmp_path):
    with pytest.raises(CheckpointError, match="its classifier was trained on mean pooling, so pooling cls"):
        finetune(mean_folder, "classification", sentiment, tmp_path / "cls", max_steps=1, pooling="cls", **FAST)
    kept = finetune(mean_folder, "classification", sentiment, tmp_path / "kept", max_steps=1, **FAST)
    assert BertConfig.from_json(kept.model_dir / "config.json").classifier_pooling == "mean", \
        "fine-tuning a mean head further without --pooling should keep the mean"


def test_pooling_is_for_sequence_heads_only(mean_folder, tmp_path):
    with pytest.raises(MinibertError, match="pooling sets a classification or regression head; ner heads"):
        finetune(mean_folder, "ner", tmp_path / "unread.txt", tmp_path / "out", pooling="mean")


def test_cli_pooling_flag_and_its_refusal(mean_folder, sentiment, tmp_path, capsys):
    status = main(["finetune", str(mean_folder), "--task", "classification", "--train", str(sentiment),
                   "--pooling", "cls", "--output-dir", str(tmp_path), "--max-steps", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, f"one line, exit 2: {err}"
    assert "trained on mean pooling, so --pooling cls would feed it vectors it never saw" in err, err
