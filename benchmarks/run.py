"""Benchmark minibert against Hugging Face transformers, interleaved in one process with the same weights and inputs.

    python benchmarks/run.py --quick            # a few minutes: fewer cases and rounds (make bench)
    python benchmarks/run.py                    # every case (make bench-full)
    python benchmarks/run.py --device cuda      # bf16, flash SDPA; writes results/cuda.json

Sections: 1. inference (dense and mixed lengths), 2. pretraining steps (MLM + NSP), 3. fine-tuning steps on real
movie reviews, 4. torch.compile, 5. bf16 autocast. Writes results/<device>[-quick].json and .md.
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import memory
import report
from device import Device
from timing import FLOP_FORMULA, QUIET_CORES, interleaved_times, matmul_gflops, matmul_step, median
from workloads import MIXED_LENGTHS, Case, build_case

RESULTS = Path(__file__).resolve().parent / "results"
OURS = "minibert"


@dataclass(frozen=True)
class Plan:
    rounds: int  # timed rounds at most
    min_rounds: int
    budget_s: float  # per case; rounds stop once it is spent (after min_rounds)
    quiet_wait_s: float  # per round, the longest wait for other processes to leave the cores
    inference: tuple[tuple[int, int, bool], ...]  # (batch, seq, mixed), bert-base
    inference_memory: tuple[tuple[int, int, bool], ...]  # the inference cases whose memory is probed
    pretraining: tuple[tuple[str, int], ...]  # (size, batch) at seq 128
    finetuning_batches: int
    finetuning_sorted: bool
    compile: bool
    bf16: bool


QUICK = Plan(rounds=3, min_rounds=2, budget_s=20, quiet_wait_s=5,
             inference=((1, 32, False), (8, 128, False), (32, 128, True)),
             inference_memory=((32, 128, True),), pretraining=(("tiny", 32),), finetuning_batches=4,
             finetuning_sorted=False, compile=False, bf16=True)
FULL_INFERENCE = ((1, 32, False), (8, 128, False), (8, 128, True), (32, 128, False), (32, 128, True),
                  (8, 512, False), (8, 512, True))
FULL = Plan(rounds=5, min_rounds=3, budget_s=45, quiet_wait_s=20, inference=FULL_INFERENCE,
            inference_memory=((1, 32, False), (8, 128, False), (8, 128, True), (32, 128, True), (8, 512, True)),
            pretraining=(("tiny", 32), ("bert-base", 8)), finetuning_batches=20,
            finetuning_sorted=True, compile=True, bf16=True)


def main() -> None:
    args = parse_args()
    device = Device(args.device, args.threads)
    device.setup()
    plan = QUICK if args.quick else FULL
    mm = matmul_gflops(device.torch, device.inference_dtype, device.matmul_size, device.sync)
    print(f"matmul: {mm['median_gflops']:.0f} GFLOP/s ({torch.get_num_threads()} threads)", flush=True)
    results = {"machine": report.machine(device), "settings": settings(plan, args, device), "matmul": mm,
               "complete": False, "cases": []}
    stem = args.device + ("-quick" if args.quick else "")
    for section in (inference_section, pretraining_section, finetuning_section, compile_section, bf16_section):
        results["cases"] += section(plan, device)
        report.attach_targets(results["cases"])
        report.write(results, args.output, stem)  # after each section, so an interrupted run leaves its results
    results["complete"] = True
    print("wrote", *report.write(results, args.output, stem))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer cases and rounds (a few minutes)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads on cpu (default 2)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for <device>[-quick].json and .md")
    return parser.parse_args()


def settings(plan: Plan, args: argparse.Namespace, device: Device) -> dict:
    return {"quick": args.quick, "rounds": plan.rounds, "min_rounds": plan.min_rounds,
            "case_budget_s": plan.budget_s, "warmup_rounds": 1, "mixed_lengths": MIXED_LENGTHS,
            "flop_formula": FLOP_FORMULA, "memory_method": memory.METHOD[device.type],
            "inference_dtype": str(device.inference_dtype).removeprefix("torch."),
            "quiet_cores": QUIET_CORES, "quiet_wait_s": plan.quiet_wait_s,
            "timing_note": TIMING_NOTE[device.type]}


TIMING_NOTE = {
    "cpu": "the cores are shared with other processes (other test suites, hypervisor steal) and a busy core slows "
           "a 2-thread step several-fold; each round first waits for a quiet machine and rounds during which other "
           f"processes still used more than {QUIET_CORES} of a core are discarded while the case's time budget "
           "lasts. Cases marked 'contended' kept contended rounds; their absolute rates are low, ratios less so.",
    "cuda": "each step is followed by torch.cuda.synchronize()",
}


# ----------------------------------------------------------------------------------------------------------------
# Measuring one case.
# ----------------------------------------------------------------------------------------------------------------
def measure(section: str, name: str, case: Case, plan: Plan, device: Device, with_memory: bool = True,
            ours: str = OURS, extra_steps: dict | None = None) -> dict:
    """Time every contestant interleaved (plus `extra_steps`, e.g. a reference mm), then summarise."""
    steps = case.steps
    timings = interleaved_times({**steps, **(extra_steps or {})}, device.sync, plan.rounds,
                                min_rounds=plan.min_rounds, budget_s=plan.budget_s, quiet_wait_s=plan.quiet_wait_s)
    result = summarise(section, name, case, {k: timings.seconds[k] for k in steps}, ours)
    result["reference_seconds"] = {k: timings.seconds[k] for k in extra_steps or {}}
    result["timing"] = timings.summary()
    if with_memory:
        contestants = [ours, result["transformers_setting"]]
        result["memory_mib"] = memory.step_memory_mib(case.spec, steps, contestants, device)
        if all(isinstance(result["memory_mib"].get(c), float) for c in contestants):
            result["memory_ratio"] = result["memory_mib"][ours] / result["memory_mib"][contestants[1]]
    return result


def summarise(section: str, name: str, case: Case, times: dict[str, list[float]], ours: str) -> dict:
    """The best transformers setting is the one with the lower median time. `ratio` is the median over rounds of
    the two contestants' speed ratio within a round: rounds are interleaved, so a drift of the machine's speed
    between rounds cancels; the ratio of the medians and of the fastest rounds are kept beside it."""
    medians = {k: median(v) for k, v in times.items()}
    theirs = min((k for k in medians if k.startswith("transformers[")), key=medians.get)
    throughput = {k: case.units / m for k, m in medians.items()}
    return {"section": section, "name": name, "spec": case.spec, "unit": case.unit,
            "units_per_step": case.units, "info": case.info, "rounds": len(times[ours]), "seconds": times,
            "median_seconds": medians, "throughput": throughput, "ours": ours, "transformers_setting": theirs,
            "minibert": throughput[ours], "transformers": throughput[theirs],
            "ratio": median([t / o for o, t in zip(times[ours], times[theirs])]),
            "ratio_of_medians": medians[theirs] / medians[ours],
            "ratio_of_fastest_rounds": min(times[theirs]) / min(times[ours])}


def report_line(result: dict) -> dict:
    print(one_line(result), flush=True)
    return result


def one_line(result: dict) -> str:
    line = (f"{result['name']}: minibert {result['minibert']:,.1f} {result['unit']}/s, transformers "
            f"{result['transformers']:,.1f} ({result['transformers_setting']}), ratio {result['ratio']:.2f}")
    if "matmul_fractions" in result:
        line += f", minibert at {result['matmul_fractions'][result['ours']]:.0%} of mm rate"
    if "memory_ratio" in result:
        line += f", memory ratio {result['memory_ratio']:.2f}"
    return line


def release(case: Case) -> None:
    case.models.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------------
# 1. Inference.
# ----------------------------------------------------------------------------------------------------------------
def inference_spec(batch: int, seq: int, mixed: bool, **extra) -> dict:
    return {"kind": "inference", "size": "bert-base", "batch": batch, "seq": seq, "mixed": mixed, **extra}


def inference_section(plan: Plan, device: Device) -> list[dict]:
    """All shapes share one set of models."""
    results, models = [], None
    for shape in plan.inference:
        case = build_case(inference_spec(*shape), device, models=models)
        models = case.models
        name = f"inference bert-base ({shape[0]},{shape[1]}) {'mixed' if shape[2] else 'dense'}"
        results.append(report_line(measure_inference(name, case, plan, device,
                                                     with_memory=shape in plan.inference_memory)))
    if models is not None:
        release(case)
    return results


def measure_inference(name: str, case: Case, plan: Plan, device: Device, ours: str = OURS,
                      with_memory: bool = True, mm_dtype: torch.dtype | None = None) -> dict:
    """Adds per-call latency and each contestant's share of the matmul rate (an mm of `mm_dtype`, by default the
    inference dtype, timed in the same rounds)."""
    mm, mm_flops = matmul_step(device.torch, mm_dtype or device.inference_dtype, device.matmul_size)
    result = measure("inference", name, case, plan, device, with_memory, ours, extra_steps={"matmul": mm})
    mm_seconds = result["reference_seconds"]["matmul"]
    result["latency_ms"] = {k: 1000 * s for k, s in result["median_seconds"].items()}
    result["latency_ratio"] = 1 / result["ratio"]
    result["matmul_gflops_in_rounds"] = mm_flops / median(mm_seconds) / 1e9
    # Per round: the model's FLOP rate over the reference mm's rate in the same round.
    result["matmul_fractions"] = {k: median([case.flops / s * m / mm_flops for s, m in zip(seconds, mm_seconds)])
                                  for k, seconds in result["seconds"].items()}
    result["matmul_fraction"] = result["matmul_fractions"][ours]
    result["info"]["gflop_per_step"] = case.flops / 1e9
    return result


# ----------------------------------------------------------------------------------------------------------------
# 2. Pretraining and 3. fine-tuning steps.
# ----------------------------------------------------------------------------------------------------------------
def pretraining_section(plan: Plan, device: Device) -> list[dict]:
    results = []
    for size, batch in plan.pretraining:
        case = build_case({"kind": "pretraining", "size": size, "batch": batch, "seq": 128, "mask_prob": 0.15},
                          device)
        results.append(report_line(measure("pretraining", f"pretraining {size} ({batch},128)", case, plan, device)))
        release(case)
    return results


def finetuning_section(plan: Plan, device: Device) -> list[dict]:
    results = []
    for sort_by_length in (False, True) if plan.finetuning_sorted else (False,):
        spec = {"kind": "finetuning", "batches": plan.finetuning_batches, "batch_size": 32,
                "sort_by_length": sort_by_length}
        case = build_case(spec, device)
        name = f"fine-tuning MiniLM-L6 rotten_tomatoes, {'length-sorted' if sort_by_length else 'file order'}"
        results.append(report_line(measure("fine-tuning", name, case, plan, device)))
        release(case)
    return results


# ----------------------------------------------------------------------------------------------------------------
# 4. torch.compile and 5. bf16 autocast, on dense bert-base (8,128) inference.
# ----------------------------------------------------------------------------------------------------------------
def compile_section(plan: Plan, device: Device) -> list[dict]:
    name = "torch.compile bert-base (8,128) dense"
    if not plan.compile:
        return [{"section": "compile", "name": name, "skipped": "not run in --quick"}]
    case = build_case(inference_spec(8, 128, False, unpad=False), device)
    try:
        import torch._inductor.config
        torch._inductor.config.force_disable_caches = True  # a cold compile, not one served from an earlier run
        compiled = torch.compile(case.models[OURS])
        step = case.make_step(compiled)
        start = time.perf_counter()
        step()  # compiles
        device.sync()
        compile_seconds = time.perf_counter() - start
    except Exception as error:  # any failure of the compiler toolchain is a result to record, not a crash
        release(case)
        return [report_skip({"section": "compile", "name": name,
                             "skipped": f"torch.compile failed: {type(error).__name__}: {str(error)[:300]}"})]
    case.models = {f"{OURS}[compiled]": compiled, **case.models}
    result = measure_inference(name, case, plan, device, ours=f"{OURS}[compiled]", with_memory=False)
    result["compiled_setting"] = ("minibert with unpad=False (static shapes), torch.compile defaults; compile_seconds "
                                  "is the first call with inductor's caches disabled")
    result["compile_seconds"] = compile_seconds
    result["compile_gain"] = result["median_seconds"][OURS] / result["median_seconds"][f"{OURS}[compiled]"]
    release(case)
    return [report_line(result)]


def bf16_section(plan: Plan, device: Device) -> list[dict]:
    name = "bf16 autocast bert-base (8,128) dense"
    if not plan.bf16:
        return [{"section": "bf16", "name": name, "skipped": "not run"}]
    if device.type == "cuda":
        return [{"section": "bf16", "name": name, "skipped": "cuda inference already runs in bfloat16"}]
    case = build_case(inference_spec(8, 128, False, bf16_autocast=True), device)
    result = measure_inference(name, case, plan, device, with_memory=False, mm_dtype=torch.bfloat16)
    release(case)
    return [report_line(result)]


def report_skip(result: dict) -> dict:
    print(f"{result['name']}: skipped ({result['skipped']})", flush=True)
    return result


if __name__ == "__main__":
    main()
