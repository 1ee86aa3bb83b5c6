"""`make gpu-check`: everything minibert claims about GPUs, checked in one run of under 10 minutes.

    python scripts/gpu_check.py            # writes benchmarks/results/gpu-check.md and .json (commit them)

1. the test suite with `--device cuda` (tests/test_device.py runs minibert on the GPU against CPU references;
   the rest of the suite runs as usual);
2. `benchmarks/run.py --device cuda`: bf16 weights, flash SDPA, against transformers (results/cuda.md);
3. a short bf16 pretraining run under `torchrun --nproc_per_node 1`, which starts an nccl process group even for
   one GPU (minibert/training/processes.py), on the Wikipedia leads with the all-MiniLM-L6-v2 vocabulary.

Each step has its own time limit; the report names the GPU, the CUDA and driver versions, and each step's outcome.
Without a CUDA device it stops at once with one line saying why.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LIMITS_S = {"tests": 240, "benchmark": 210, "pretraining": 120}  # 570 s in all, under the 10-minute budget


def main(argv: list[str] | None = None) -> int:
    import torch
    problem = cuda_problem(torch)
    if problem:
        print(f"gpu-check: {problem}", file=sys.stderr)
        return 2
    facts = {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda, "driver": driver_version(),
             "torch": torch.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat("T", "seconds"),
             "gpus": torch.cuda.device_count()}
    print(f"gpu-check on {facts['gpu']} (CUDA {facts['cuda']}, driver {facts['driver']})", flush=True)
    steps = {"tests": run_tests, "benchmark": run_benchmark, "pretraining": run_pretraining}
    outcomes = {}
    for name, step in steps.items():
        started = time.perf_counter()
        outcomes[name] = step(LIMITS_S[name])
        outcomes[name]["seconds"] = round(time.perf_counter() - started, 1)
        print(f"{name}: {'ok' if outcomes[name]['ok'] else 'FAILED'} ({outcomes[name]['summary']}, "
              f"{outcomes[name]['seconds']:.0f} s)", flush=True)
    write_report(facts, outcomes)
    return 0 if all(o["ok"] for o in outcomes.values()) else 1


def cuda_problem(torch) -> str | None:
    """Why this machine cannot run the check, or None."""
    if torch.version.cuda is None:
        return (f"torch {torch.__version__} is a CPU-only build; on a GPU machine install a CUDA build of the same "
                f"version (pip install torch=={torch.__version__.split('+')[0]} --index-url "
                f"https://download.pytorch.org/whl/cu128) and run again")
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device on this machine"
    return None


def driver_version() -> str:
    if shutil.which("nvidia-smi") is None:
        return "unknown"
    done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True)
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else "unknown"


def run(command: list[str], limit_s: float, **kwargs) -> tuple[int, str]:
    """Exit status (124 when over the limit) and the combined output."""
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit_s, **kwargs)
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        return 124, out + f"\n(stopped after {limit_s:.0f} s)"
    return done.returncode, done.stdout + done.stderr


# ----------------------------------------------------------------------------------------------------------------
# The three steps.
# ----------------------------------------------------------------------------------------------------------------
def run_tests(limit_s: float) -> dict:
    status, out = run([sys.executable, "-m", "pytest", "tests", "--device", "cuda", "-q", "-p", "no:warnings"],
                      limit_s)
    summary = next((line.strip("= ") for line in reversed(out.splitlines()) if re.search(r"\d+ (passed|failed)",
                                                                                       line)), "no summary")
    return {"ok": status == 0, "summary": summary, "tail": out[-3000:]}


def run_benchmark(limit_s: float) -> dict:
    status, out = run([sys.executable, "benchmarks/run.py", "--device", "cuda"], limit_s)
    result_file = RESULTS / "cuda.json"
    summary = "results/cuda.md" if status == 0 and result_file.exists() else f"exit status {status}"
    return {"ok": status == 0, "summary": summary, "tail": out[-3000:]}


def run_pretraining(limit_s: float, device: str = "cuda", corpus: Path | None = None, steps: int = 300,
                    preset: str = "small", batch_size: int = 64, seq: int = 128, eval_fraction: float = 0.01) -> dict:
    """bf16 pretraining under torchrun with one process: its process group must be nccl on CUDA (gloo on CPU)."""
    corpus = corpus or package_file("wikipedia")
    vocabulary = package_file("minilm")
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                   "-m", "minibert", "-v", "pretrain", "--corpus", str(corpus), "--tokenizer", str(vocabulary),
                   "--preset", preset, "--output-dir", folder, "--max-seq-length", str(seq), "--batch-size",
                   str(batch_size), "--lr", "5e-4", "--warmup-ratio", "0.1", "--max-steps", str(steps),
                   "--precision", "bf16", "--device", device, "--eval-every", str(steps), "--eval-fraction",
                   str(eval_fraction), "--no-progress"]
        status, out = run(command, limit_s)
        metrics = Path(folder) / "metrics.jsonl"
        records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    backend = "nccl" if device.startswith("cuda") else "gloo"
    grouped = f"process group: {backend}" in out
    evaluation = next((r for r in reversed(records) if any(k.startswith("eval") for k in r)), {})
    summary = (f"process group {backend if grouped else 'NOT ' + backend}, {len(records)} metric records, held-out "
               f"{json.dumps({k: round(v, 4) for k, v in evaluation.items() if isinstance(v, float)})}")
    return {"ok": status == 0 and grouped and bool(records), "summary": summary, "tail": out[-3000:],
            "last_records": records[-3:]}


def package_file(name: str) -> Path:
    from minibert.plumbing.demo_assets import MissingAssetError, asset_path
    try:
        return asset_path(name)
    except MissingAssetError as error:
        raise SystemExit(f"gpu-check: {error}") from None


def write_report(facts: dict, outcomes: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu-check.json").write_text(json.dumps({"machine": facts, "steps": outcomes}, indent=2) + "\n")
    lines = [f"# gpu-check on {facts['gpu']}", "",
             f"Run {facts['date']}: {facts['gpus']} GPU(s), {facts['gpu']}, CUDA {facts['cuda']}, driver "
             f"{facts['driver']}, torch {facts['torch']}.", "", "| step | outcome | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {'ok' if o['ok'] else '**failed**'}: {o['summary']} | {o['seconds']:.0f} |"
              for name, o in outcomes.items()]
    lines += ["", "Benchmark figures: [cuda.md](cuda.md). Logs of each step are in gpu-check.json.", ""]
    (RESULTS / "gpu-check.md").write_text("\n".join(lines))
    print("wrote", RESULTS / "gpu-check.md")


if __name__ == "__main__":
    sys.exit(main())
