"""`minibert explain` end to end: the text journey, the HTML explorer and the PNG heat maps on the real
all-MiniLM-L6-v2 and on a tiny model `minibert pretrain` wrote; bad input ends with exit status 2 and one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minibert.cli.main import main

from .test_explorer import embedded_data

TEXT, PAIR = "the capital of france is [MASK].", "paris is a city."


def check_heat_maps(folder: Path, layers: int) -> None:
    import matplotlib.image
    paths = sorted(folder.glob("*.png"))
    assert [p.name for p in paths] == [f"layer_{i:02d}.png" for i in range(1, layers + 1)], "one PNG per layer"
    images = [matplotlib.image.imread(p) for p in paths]
    for path, image in zip(paths, images):
        assert image.ndim == 3 and min(image.shape[:2]) >= 200, f"{path.name}: shape {image.shape}"
        assert image.std() > 0.01, f"{path.name} is blank"
    if layers > 1:
        assert not np.array_equal(images[0], images[1]), "layers 1 and 2 should not draw the same picture"


@pytest.mark.parametrize("which", ["pretrained", "minilm"])
def test_three_outputs(which, pretrained_dir, minilm_dir, tmp_path, capsys):
    model_dir, layers = (pretrained_dir, 2) if which == "pretrained" else (minilm_dir, 6)
    status = main(["explain", str(model_dir), TEXT, "--pair", PAIR, "--top-k", "3", "--html",
                   str(tmp_path / "page.html"), "--png", str(tmp_path / "png")])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "1. WordPiece" in out and f"Layer {layers} of {layers}" in out and "Pooler and heads" in out, out
    if which == "pretrained":
        assert ":[MASK]  " in out and "next sentence: P(B follows A) = " in out, "the pretrained model's heads"
    else:
        assert "no masked-LM head" in out, "MiniLM has no MLM head: say so"
    assert f"attention explorer: {tmp_path / 'page.html'}" in out
    data = embedded_data((tmp_path / "page.html").read_text(encoding="utf-8"))
    assert data["layers"] == layers and data["pair"] == PAIR and 1 in data["segments"]
    assert f"attention heat maps: {layers} files in {tmp_path / 'png'}" in out
    check_heat_maps(tmp_path / "png", layers)


def error_line(capsys, argv: list[str]) -> str:
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2, f"expected exit status 2, got {status}; stderr:\n{captured.err}"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minibert explain: error: "), f"not one line:\n{captured.err}"
    assert captured.out == "", "nothing should be printed before a bad-input error"
    return lines[0]


@pytest.mark.parametrize("case", ["text too long", "missing model", "png without matplotlib", "unwritable html",
                                  "png path is a file", "bad head", "head out of range", "empty text"])
def test_bad_input_is_one_line_and_status_2(case, pretrained_dir, tmp_path, capsys, monkeypatch):
    model, text, extra = str(pretrained_dir), TEXT, []
    if case == "text too long":
        text, expected = "paris " * 70, "the text is 72 WordPiece tokens; this model takes at most 64"
    elif case == "missing model":
        model, expected = str(tmp_path / "nowhere"), f"{tmp_path / 'nowhere'}: no such file or folder"
    elif case == "png without matplotlib":
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
        extra, expected = ["--png", str(tmp_path / "png")], "--png needs matplotlib: pip install 'minibert[plot]'"
    elif case == "unwritable html":
        (tmp_path / "a-file").write_text("")
        extra = ["--html", str(tmp_path / "a-file" / "page.html")]
        expected = f"--html {tmp_path / 'a-file' / 'page.html'}: cannot be written ({tmp_path / 'a-file'} is a file)"
    elif case == "png path is a file":
        (tmp_path / "a-file").write_text("")
        extra, expected = ["--png", str(tmp_path / "a-file")], f"is not writable ({tmp_path / 'a-file'} is a file)"
    elif case == "bad head":
        extra, expected = ["--mask-head", "two"], "--mask-head 'two': expected LAYER:HEAD"
    elif case == "head out of range":
        extra, expected = ["--mask-head", "3:1"], "--mask-head 3:1: this model has layers 1-2 and heads 1-2"
    else:
        text, expected = "  ", "the text (and --pair, when given) must not be empty"
    line = error_line(capsys, ["explain", model, text, *extra])
    assert expected in line, line
    assert not (tmp_path / "png").exists(), "nothing written on bad input"


def test_the_installed_entry_point_prints_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "minibert", "explain", str(tmp_path / "missing"), TEXT],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, f"exit status {done.returncode}, stderr:\n{done.stderr}"
    assert done.stderr.strip().splitlines() == [f"minibert explain: error: {tmp_path / 'missing'}: no such file or "
                                                "folder"], done.stderr
