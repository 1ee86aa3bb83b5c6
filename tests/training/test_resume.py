import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).parent / "run_tiny_training.py"
# 48 examples, 4 per step: 12 steps an epoch, so 30 steps cross two epoch boundaries.
# Dropout on: resuming must restore the random streams too.
SETTINGS = {"max_steps": 30, "save_every": 5, "per_device_batch_size": 4, "eval_every": 10, "dropout": 0.1}


def start(output_dir: Path, **overrides) -> subprocess.Popen:
    settings = json.dumps({"output_dir": str(output_dir), **SETTINGS, **overrides})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(SCRIPT), settings], env=env, stderr=subprocess.PIPE, text=True)


def losses(output_dir: Path) -> dict[int, float]:
    """Training loss at each step, and evaluation loss at the steps that evaluated (as step + 0.5)."""
    found = {}
    for record in map(json.loads, (output_dir / "metrics.jsonl").read_text().splitlines()):
        found[record["step"]] = record["loss"]
        if "eval_loss" in record:
            found[record["step"] + 0.5] = record["eval_loss"]
    return found


def test_resume_after_sigkill_repeats_the_uninterrupted_run(tmp_path):
    reference = start(tmp_path / "reference")
    # dataset_delay slows loading so the kill lands mid-run; 2 workers, unlike the reference, must not matter.
    victim = start(tmp_path / "killed", dataset_delay=0.005, num_workers=2)
    index = tmp_path / "killed" / "checkpoints" / "index.json"
    deadline = time.monotonic() + 60
    while not index.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {victim.stderr.read()}"
    assert not (tmp_path / "killed" / "final").exists(), "the killed run should not have finished"
    killed_at = max(losses(tmp_path / "killed"))  # the last step logged before the kill

    resumed = start(tmp_path / "killed", resume=True, num_workers=2)
    for run in (reference, resumed):
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, f"training failed:\n{stderr}"
    expected, got = losses(tmp_path / "reference"), losses(tmp_path / "killed")
    assert sorted(got) == sorted(expected), f"steps logged: {sorted(got)}, expected {sorted(expected)}"
    assert [step for step in expected if step % 1] == [10.5, 20.5, 30.5], "evaluations expected at 10, 20, 30"
    worst = max(abs(expected[step] - got[step]) for step in expected)
    assert worst <= 1e-6, f"killed at step {killed_at} and resumed, the losses differ by up to {worst}"
