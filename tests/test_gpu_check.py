"""`make gpu-check` on a machine without a GPU stops at once with one line saying why, and names what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from script_loading import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: gpu-check runs in full there")
def test_without_cuda_it_stops_with_one_line():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, f"expected status 2, got {done.returncode}: {done.stderr[-800:]}"
    assert len(lines) == 1 and lines[0].startswith("gpu-check: "), lines
    assert done.stdout == "", "nothing should run or be written without a GPU"


@pytest.mark.parametrize("version, available, expected", [
    (None, False, "CPU-only build"),
    ("12.8", False, "sees no CUDA device"),
    ("12.8", True, None),
])
def test_the_reason_names_the_build_or_the_missing_device(version, available, expected):
    fake = SimpleNamespace(__version__="2.13.0+cu128", version=SimpleNamespace(cuda=version),
                           cuda=SimpleNamespace(is_available=lambda: available))
    problem = load_script("gpu_check").cuda_problem(fake)
    assert (problem is None) if expected is None else (expected in problem), problem


def test_the_pretraining_step_runs_under_torchrun_with_a_process_group(tmp_path):
    """The same command as on a GPU, on the CPU (gloo instead of nccl) and for a few steps."""
    corpus = tmp_path / "docs.txt"
    sentences = ["The river flows past the old mill.", "Children play in the park after school.",
                 "A storm closed the mountain road.", "The library opens at nine every morning."]
    corpus.write_text("\n".join(" ".join(sentences[(i + j) % 4] for j in range(3)) for i in range(40)) + "\n")
    outcome = load_script("gpu_check").run_pretraining(240, device="cpu", corpus=corpus, steps=3, preset="tiny", batch_size=4,
                                             seq=32, eval_fraction=0.2)
    assert outcome["ok"], f"{outcome['summary']}\n{outcome['tail']}"
    assert "process group gloo" in outcome["summary"] and outcome["last_records"], outcome["summary"]
