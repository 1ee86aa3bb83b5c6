"""Levers that need a process of their own, each timed in fresh processes, alternating A, B, A, B:

- OpenMP's wait policy (OMP_WAIT_POLICY=PASSIVE against GNU OpenMP's default of spinning between operations) and
  thread binding (OMP_PROC_BIND=close, OMP_PLACES=cores): read once, when torch loads its OpenMP runtime;
- torch.compile with freezing (constant weights folded and pre-packed, CPU inductor), with its compile cost from a
  cold cache and from a warm one (a second process on the same cache folder).

Run as a script, this file is the probe: `probe.py '<json request>'` prints one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import contention
from contention import BusyCore, ForeignCpu

ENV_LEVERS = {  # name -> (environment of the variant, of its baseline)
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, {}),
    "OMP_PROC_BIND=close OMP_PLACES=cores": ({"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}, {}),
}
SHAPES = ((1, 32), (8, 128))


def section(plan, device, report_line) -> list[dict]:
    if not plan.probes or device.type != "cpu":
        return []
    checkpoint = tempfile.mkdtemp(prefix="minibert-probe-")
    _save_bert_base(Path(checkpoint))
    results = []
    for condition in plan.conditions:
        for lever, (variant_env, base_env) in ENV_LEVERS.items():
            for shape in SHAPES:
                request = {"checkpoint": checkpoint, "shape": shape, "threads": device.threads, "calls": 8}
                results.append(report_line(_ab(lever, shape, condition, request, variant_env, base_env, plan)))
    results.append(report_line(_compile_lever(checkpoint, device.threads)))
    return results


def _save_bert_base(folder: Path) -> None:
    import torch
    import transformers
    from minibert.config import PRESETS
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**PRESETS["bert-base"])).save_pretrained(folder)


def _ab(lever: str, shape, condition: str, request: dict, variant_env: dict, base_env: dict, plan) -> dict:
    """Median seconds per call of `rounds` variant/baseline process pairs, and the per-pair speed-up."""
    samples = {"variant": [], "baseline": [], "foreign": []}
    busy = BusyCore() if condition != "quiet" else None
    if busy:
        busy.__enter__()
    try:
        for round_ in range(plan.rounds):
            order = ("variant", "baseline") if round_ % 2 == 0 else ("baseline", "variant")
            for which in order:
                env = variant_env if which == "variant" else base_env
                out = _run({**request, "controlled": sorted(contention._CONTROLLED)}, env)
                samples[which].append(statistics.median(out["seconds"]))
                samples["foreign"].append(max(out["foreign"]))
    finally:
        if busy:
            busy.__exit__()
    speedups = [b / v for v, b in zip(samples["variant"], samples["baseline"])]
    contended = sum(f > contention.QUIET_CORES for f in samples["foreign"]) > len(samples["foreign"]) // 2
    return {"section": "probe", "name": f"{lever}, bert-base {tuple(shape)}", "lever": lever, "shape": shape,
            "condition": condition, "threads": request["threads"], "seconds": samples,
            "speedup": statistics.median(speedups), "speedups": speedups,
            "timing": {"contended": contended, "contention_cores": [round(f, 2) for f in samples["foreign"]]}}


def _compile_lever(checkpoint: str, threads: int) -> dict:
    cache = tempfile.mkdtemp(prefix="minibert-inductor-")
    env = {"TORCHINDUCTOR_CACHE_DIR": cache}
    request = {"checkpoint": checkpoint, "shape": (8, 128), "threads": threads, "calls": 6, "compile": True}
    cold, warm = _run(request, env), _run(request, env)
    return {"section": "probe", "name": "torch.compile (freezing, CPU inductor), bert-base (8, 128)",
            "lever": "torch.compile freezing", "condition": "quiet", "threads": threads,
            "compile_seconds_cold": cold["compile_seconds"], "compile_seconds_warm": warm["compile_seconds"],
            "speedup": statistics.median(warm["speedups"]), "speedups": warm["speedups"],
            "timing": {"contended": max(cold["foreign"] + warm["foreign"]) > contention.QUIET_CORES,
                       "contention_cores": [round(f, 2) for f in cold["foreign"] + warm["foreign"]]}}


def _run(request: dict, env: dict) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), json.dumps(request)],
                          env={**clean, **env}, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"probe failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------------
# The probe, in its own process.
# ----------------------------------------------------------------------------------------------------------------
def _probe(request: dict) -> dict:
    import torch
    from minibert.speed.fused_layers import prepare_for_inference
    from minibert.model import BertModel
    contention._CONTROLLED.update(request.get("controlled", []))
    torch.set_num_threads(request["threads"])
    batch, tokens = request["shape"]
    ids = torch.randint(1000, 30522, (batch, tokens), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    model = prepare_for_inference(BertModel.from_pretrained(request["checkpoint"]))
    out = {"seconds": [], "foreign": []}
    with torch.inference_mode():
        if request.get("compile"):
            return _probe_compile(request, inputs, model, out)
        model(**inputs)
        for _ in range(request["calls"]):
            seconds, foreign = _timed(lambda: model(**inputs))
            out["seconds"].append(seconds)
            out["foreign"].append(foreign)
    return out


def _probe_compile(request: dict, inputs: dict, eager, out: dict) -> dict:
    import torch
    import torch._inductor.config as inductor
    from minibert.model import BertModel
    inductor.freezing = True  # weights become constants: folded, and pre-packed for the CPU kernels
    static = BertModel.from_pretrained(request["checkpoint"], unpad=False).eval()  # no data-dependent shapes
    compiled = torch.compile(static)
    start = time.perf_counter()
    compiled(**inputs)
    out["compile_seconds"] = time.perf_counter() - start
    eager(**inputs)
    out["speedups"] = []
    for _ in range(request["calls"]):
        compiled_s, foreign_a = _timed(lambda: compiled(**inputs))
        eager_s, foreign_b = _timed(lambda: eager(**inputs))
        out["speedups"].append(eager_s / compiled_s)
        out["foreign"].append(max(foreign_a, foreign_b))
    return out


def _timed(call) -> tuple[float, float]:
    cpu = ForeignCpu()
    start = time.perf_counter()
    call()
    wall = time.perf_counter() - start
    return wall, cpu.cores(wall)


if __name__ == "__main__":
    print(json.dumps(_probe(json.loads(sys.argv[1]))))
