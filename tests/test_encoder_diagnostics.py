"""scripts/encoder_diagnostics.py on a tiny model and a comparison's splits: the linear probe scores a frozen
encoder's features on the test split (a pretrained stand-in beside random init), and the [CLS]-attention
diagnostic gives one share per layer."""

from __future__ import annotations

import re

from minibert.comparison.splits import make_splits, write_splits
from minibert.finetuning.kinds import task_kind
from minibert.finetuning.run import DataSpec

from finetuning.test_run import TINY, classification_rows, make_checkpoint, write_csv
from script_loading import load_script


def test_linear_probe_and_cls_attention(tmp_path, capsys):
    kind = task_kind("classification")
    data = write_csv(tmp_path / "reviews.csv", classification_rows(160))
    write_splits(kind, make_splits(kind, data, DataSpec()), tmp_path / "splits")
    checkpoint = make_checkpoint(tmp_path / "model")
    load_script("encoder_diagnostics").main([str(checkpoint), "--splits", str(tmp_path / "splits"), "--seeds", "0", "1",
                        "--max-length", "24", "--linear-probe", "--cls-attention"])
    out = capsys.readouterr().out
    shares = re.search(r"by layer: pretrained (.*)", out).group(1).split(", ")
    assert len(shares) == TINY["num_hidden_layers"], f"one [CLS] share per layer: {out}"
    for pooling in ("mean", "cls"):
        line = re.search(rf"linear probe, {pooling} pooling: pretrained (\d+\.\d)%, random init (\d+\.\d)% ± ", out)
        assert line, f"a {pooling} probe line for both encoders: {out}"
        assert 0 <= float(line.group(1)) <= 100, line.group(0)
