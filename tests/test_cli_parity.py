"""`minibert parity` through the command line, on tiny seeded checkpoints (an encoder with its pooler, and one with
both pretraining heads): the table has a row for the embeddings, every layer, the pooler or each head, for single
sentences and for pairs; its numbers are the real max/mean differences; the exit status is 0 when minibert agrees
with transformers, and 1 when one layer of minibert's copy of the weights is nudged (what a loading or arithmetic
bug in that layer looks like: the checkpoint file itself cannot differ, both libraries read the same file)."""

from __future__ import annotations

import re

import pytest
import torch

import minibert.checkpoint
from minibert.cli.main import main
from minibert.config import BertConfig
from minibert.model import BertForPreTraining, BertModel
from minibert.tokenizer import BertTokenizer

from conftest import randomize_
from finetuning.test_run import VOCAB

LAYERS = 3
ROW = re.compile(r"^(?P<name>.+?)\s+(?P<max>\d\.\d{3}e[+-]\d\d)\s+(?P<mean>\d\.\d{3}e[+-]\d\d)(?P<flag>  <-- above "
                 r"tolerance)?$")
SENTENCES = ["the film was good .", "alice and bob were in paris", "who is there ?",
             "the story of the movie and the plot of the scene was very very quite bad"]
LAYER_ROWS = ["embeddings", *[f"layer {i}" for i in range(1, LAYERS + 1)]]
HEAD_ROWS = {BertModel: ["pooler_output"], BertForPreTraining: ["prediction_logits", "seq_relationship_logits"]}


def save_checkpoint(folder, model_class):
    """`model_class` with seeded weights far from init, its vocabulary and a sentence file."""
    folder.mkdir()
    (folder / "vocab.txt").write_text("".join(token + "\n" for token in VOCAB), encoding="utf-8")
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=64)
    randomize_(model_class(config), seed=7).save_pretrained(folder)
    BertTokenizer.from_vocab(folder / "vocab.txt").save_pretrained(folder)
    (folder / "sentences.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    return {model_class: save_checkpoint(root / model_class.__name__, model_class) for model_class in HEAD_ROWS}


def run_parity(capsys, folder, *flags: str) -> tuple[int, dict[str, re.Match], list[str]]:
    status = main(["parity", str(folder), "--sentences", str(folder / "sentences.txt"), *flags])
    lines = capsys.readouterr().out.splitlines()
    rows = {match["name"]: match for match in map(ROW.match, lines) if match}
    return status, rows, lines


@pytest.mark.parametrize("model_class, flags, tolerance", [
    (BertModel, ("--dtype", "float64", "--attn", "eager"), 1e-10),
    (BertForPreTraining, (), 1e-4),
], ids=["encoder-float64", "pretraining-heads-float32"])
def test_unchanged_checkpoint_passes_with_a_row_per_stage(checkpoints, capsys, model_class, flags, tolerance):
    status, rows, lines = run_parity(capsys, checkpoints[model_class], *flags)
    output = "\n".join(lines)
    assert status == 0, f"an unchanged checkpoint should pass (exit 0):\n{output}"
    expected = LAYER_ROWS + HEAD_ROWS[model_class]
    expected += [f"pairs: {name}" for name in expected]
    assert list(rows) == expected, f"the table should have these rows in order {expected}, got {list(rows)}"
    for name, row in rows.items():
        assert float(row["mean"]) <= float(row["max"]) <= tolerance and not row["flag"], \
            f"row {name}: differences should be within {tolerance:.0e} (float64: the arithmetic agrees, not only " \
            f"the tolerance), mean <= max: {row.group(0)!r}"
    assert f"model: {model_class.__name__}" in output, f"the table should name the model class:\n{output}"
    assert f"tokenizer: {len(SENTENCES) + 2}/{len(SENTENCES) + 2} encodings identical" in output, \
        f"every sentence and pair should tokenize as transformers' tokenizer does:\n{output}"
    assert lines[-1].startswith("PASS: max |diff| "), f"the last line should say PASS: {lines[-1]!r}"


def test_one_nudged_layer_fails_from_that_layer_on(checkpoints, capsys, monkeypatch):
    load = minibert.checkpoint.load_pretrained
    nudged = []

    def load_with_layer_2_nudged(*args, **kwargs):
        model = load(*args, **kwargs)
        name, weight = next((name, p) for name, p in model.named_parameters() if ".1." in name)  # layer 2 of 3
        with torch.no_grad():
            weight.view(-1)[0] += 0.1
        nudged.append(name)
        return model

    monkeypatch.setattr(minibert.checkpoint, "load_pretrained", load_with_layer_2_nudged)
    checkpoint = checkpoints[BertForPreTraining]
    status, rows, lines = run_parity(capsys, checkpoint)
    output = "\n".join(lines)
    assert nudged, "test setup: minibert's checkpoint loading was not intercepted"
    assert status == 1, f"a nudged {nudged[0]} should fail parity (exit 1):\n{output}"
    for prefix in ("", "pairs: "):
        for name in LAYER_ROWS + HEAD_ROWS[BertForPreTraining]:
            above = name not in ("embeddings", "layer 1")
            assert bool(rows[prefix + name]["flag"]) == above, \
                f"row {prefix + name} should {'' if above else 'not '}be flagged above tolerance after nudging " \
                f"{nudged[0]}:\n{output}"
    assert lines[-1].startswith("FAIL: max |diff| "), f"the last line should say FAIL: {lines[-1]!r}"

    # The numbers are the real differences: the NSP logits of both models, compared here directly.
    import transformers
    theirs = transformers.BertForPreTraining.from_pretrained(str(checkpoint), attn_implementation="eager").eval()
    ours = load_with_layer_2_nudged(BertForPreTraining, checkpoint).eval()
    batch = BertTokenizer.from_pretrained(checkpoint)(SENTENCES)
    with torch.no_grad():
        difference = (ours(**batch).seq_relationship_logits - theirs(**batch).seq_relationship_logits).abs().double()
    row = rows["seq_relationship_logits"]
    assert float(row["max"]) == pytest.approx(difference.max().item(), rel=2e-3) and \
        float(row["mean"]) == pytest.approx(difference.mean().item(), rel=2e-3), \
        f"the NSP row {row.group(0)!r} should show max {difference.max():.3e} and mean {difference.mean():.3e}"
