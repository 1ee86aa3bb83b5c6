"""ONNX export: the written graph gives minibert's outputs in ONNX Runtime (real MiniLM weights and every head on
seeded configs), its batch and sequence axes are dynamic, ONNX Runtime's BERT optimizer fuses attention in every
layer, and a failed check leaves the previous file in place."""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from minibert import model as mb
from minibert.cli.main import main
from minibert.speed.onnx_export import ExportError, export_onnx
from minibert.inference import mean_pool
from minibert.tokenizer import BertTokenizer

SENTENCES = ["A gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate clichés from start to end,",
             "It's a lovely film with lovely performances by Buy and Accorsi.", "bad."]


@pytest.fixture(scope="module")
def minilm_export(minilm_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    model = mb.BertModel.from_pretrained(minilm_dir)
    report = export_onnx(model, folder / "minilm.onnx", fused=folder / "minilm.fused.onnx")
    return model, report


def test_minilm_export_matches_minibert_and_is_fully_fused(minilm_export):
    model, report = minilm_export
    assert report.max_diff["exported"] <= 1e-5, f"exported graph differs from minibert by {report.max_diff}"
    assert report.max_diff["fused"] <= 1e-5, f"ORT-fused graph differs from minibert by {report.max_diff}"
    assert report.fused_operators.get("Attention") == 6, \
        f"ORT fused attention in {report.fused_operators.get('Attention', 0)} of 6 layers: {report.fused_operators}"
    assert report.fused_operators.get("SkipLayerNormalization") == 12, f"residual+LayerNorm not fused: " \
                                                                       f"{report.fused_operators}"


@pytest.mark.parametrize("graph", ["path", "fused_path"])
def test_real_sentences_of_another_shape_give_the_same_embeddings(minilm_export, minilm_dir, graph):
    """Real sentences, a batch and length the trace never saw: the axes are really dynamic."""
    model, report = minilm_export
    batch = BertTokenizer.from_pretrained(minilm_dir)(SENTENCES)
    session = ort.InferenceSession(str(getattr(report, graph)), providers=["CPUExecutionProvider"])
    hidden, pooled = session.run(None, {k: v.numpy() for k, v in batch.items()})
    with torch.inference_mode():
        out = model(**batch)
    real = batch["attention_mask"].bool()
    assert hidden.shape == tuple(out.last_hidden_state.shape), f"ORT gave {hidden.shape}"
    diff = (torch.from_numpy(hidden)[real] - out.last_hidden_state[real]).abs().max().item()
    assert diff <= 1e-5, f"{graph}: last_hidden_state differs by {diff:.2e} on real sentences"
    assert np.abs(pooled - out.pooler_output.numpy()).max() <= 1e-5, f"{graph}: pooler_output differs"
    ours = mean_pool(out.last_hidden_state, batch["attention_mask"])
    theirs = mean_pool(torch.from_numpy(hidden), batch["attention_mask"])
    assert torch.nn.functional.cosine_similarity(ours, theirs).min() > 0.999999, "mean-pooled embeddings differ"


@pytest.mark.parametrize("cls", [mb.BertForSequenceClassification, mb.BertForTokenClassification,
                                 mb.BertForQuestionAnswering, mb.BertForPreTraining])
def test_every_head_exports_with_parity_and_fused_attention(cls, make_config, randomize, tmp_path):
    torch.manual_seed(0)
    model = randomize(cls(make_config("h36x3", num_labels=3)), seed=1).eval()
    report = export_onnx(model, tmp_path / "head.onnx")
    assert report.max_diff["exported"] <= 1e-5, f"{cls.__name__}: differs by {report.max_diff}"
    assert report.fused_operators.get("Attention") == 2, f"{cls.__name__}: {report.fused_operators}"
    session = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == report.outputs, "output names"


def test_cli_writes_the_graph_and_reports_fusion(minilm_dir, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", "onnx", str(minilm_dir), str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and out.stat().st_size > 80e6, "no full graph written"
    assert "attention fused in 6 of 6 layers" in printed, printed


def test_failed_parity_keeps_the_previous_file(minilm_dir, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the last good export")
    status = main(["export", "onnx", str(minilm_dir), str(out), "--tolerance", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "differ from minibert's" in err[0], err
    assert out.read_bytes() == b"the last good export", "a failed export replaced the previous file"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"], "temporary files left behind"


def test_unknown_class_is_one_line(minilm_dir, tmp_path, capsys):
    status = main(["export", "onnx", str(minilm_dir), str(tmp_path / "m.onnx"), "--class", "GPT2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "--class GPT2" in err[0], err


def test_missing_onnxruntime_is_one_line(monkeypatch, make_config, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(ExportError, match=r"pip install 'minibert\[onnx\]'"):
        export_onnx(mb.BertModel(make_config()), tmp_path / "m.onnx")
