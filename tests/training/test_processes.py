import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "run_tiny_training.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# 2 processes x 2 examples x 2 accumulation steps = 8 examples per step, as 1 process x 4 x 2.
SETTINGS = {"max_steps": 12, "save_every": 4, "per_device_batch_size": 2, "grad_accumulation_steps": 2}


def start(command: list[str], output_dir: Path, **overrides) -> subprocess.Popen:
    settings = json.dumps({"output_dir": str(output_dir), **SETTINGS, **overrides})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen([*command, str(SCRIPT), settings], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def finish(run: subprocess.Popen) -> None:
    _, stderr = run.communicate(timeout=180)
    assert run.returncode == 0, f"training failed:\n{stderr[-30000:]}"


def records(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process; two processes; two processes SIGKILLed after their first checkpoint, then resumed."""
    root = tmp_path_factory.mktemp("distributed")
    one = start([sys.executable], root / "one", per_device_batch_size=4)
    two = start(TORCHRUN, root / "two")
    victim = start(TORCHRUN, root / "killed", dataset_delay=0.01, pid_dir=str(root / "pids"))
    index = root / "killed" / "checkpoints" / "index.json"
    deadline = time.monotonic() + 120
    while not index.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    workers = [int(p.name) for p in (root / "pids").iterdir()]
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    assert len(workers) == 2 and not (root / "killed" / "final").exists(), "the 2-process run was not interrupted"
    killed_at = records(root / "killed")[-1]["step"]
    resumed = start(TORCHRUN, root / "killed", resume=True)
    for run in (one, two, resumed):
        finish(run)
    return root, killed_at


def test_two_processes_match_one(runs):
    root, _ = runs
    one, two = records(root / "one"), records(root / "two")
    assert [r["step"] for r in two] == list(range(1, 13)), "rank 0 alone should write metrics.jsonl, once per step"
    worst = max(abs(a["loss"] - b["loss"]) for a, b in zip(one, two))
    assert worst <= 1e-5, f"2 processes differ from 1 (same global batch) by up to {worst}"
    assert abs(one[-1]["eval_loss"] - two[-1]["eval_loss"]) <= 1e-5, "final evaluations differ"
    saved = torch.load(root / "two" / "checkpoints" / "step-000012" / "training.pt", weights_only=True)
    assert len(saved["rng"]) == 2, "a 2-process checkpoint should hold both ranks' RNG states"


def test_two_processes_resume_after_sigkill(runs):
    root, killed_at = runs
    expected, got = records(root / "two"), records(root / "killed")
    assert [r["step"] for r in got] == list(range(1, 13)), f"steps logged after resuming: {[r['step'] for r in got]}"
    worst = max(abs(a["loss"] - b["loss"]) for a, b in zip(expected, got))
    assert worst <= 1e-6, f"killed after step {killed_at} and resumed, the losses differ by up to {worst}"


def test_torchrun_with_one_process_starts_the_process_group(monkeypatch):
    """A one-GPU `torchrun --nproc_per_node 1` run must use nccl as a multi-GPU one does; on CPU, gloo."""
    import socket

    from minibert.training.processes import end_processes, start_processes
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"TORCHELASTIC_RUN_ID": "test", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    processes = start_processes("cpu")
    try:
        assert processes.started_group, "torchrun with one process did not start a process group"
        assert torch.distributed.get_backend() == "gloo" and processes.world_size == 1
    finally:
        end_processes(processes)
