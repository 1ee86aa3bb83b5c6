"""Benchmark minibert against ONNX Runtime and Hugging Face transformers, interleaved in one process with the same
weights and inputs, quiet and with one core busy.

    python benchmarks/run.py                    # the goals and levers (make bench, ~10 minutes): results/cpu.*
    python benchmarks/run.py --full             # every case and lever (make bench-full): results/cpu-full.*
    python benchmarks/run.py --device cuda      # bf16, flash SDPA, vs transformers: results/cuda.*

Sections: 1. inference vs ONNX Runtime and transformers (inference.py; goals.py judges the goals and levers),
2. int8 accuracy budgets (accuracy.py), 3. levers that need their own process (probe.py, --full), 4. pretraining
steps, 5. fine-tuning steps, 6. torch.compile (--full), 7. bf16 autocast. Results are written after each section.

Publishing (honesty.py): a case whose rounds could not be kept quiet makes the run contended; its results go to
results/<stem>-contended.* and the command exits with status 3, leaving the publishable files alone. A padding gain
above its ceiling fails the run (status 1).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import accuracy
import goals
import honesty
import inference
import machine
import memory
import probe
import report
from contention import QUIET_CORES
from device import Device
from inference import Shape
from timing import FLOP_FORMULA, interleaved_times, matmul_gflops, matmul_step, median
from workloads import MIXED_LENGTHS, Case, build_case

RESULTS = Path(__file__).resolve().parent / "results"
OURS = "minibert"
QUIET, BUSY = "quiet", "one core busy"


@dataclass(frozen=True)
class Plan:
    rounds: int  # timed rounds at most
    min_rounds: int
    budget_s: float  # per case; rounds stop once it is spent (after min_rounds)
    quiet_wait_s: float  # per round, the longest wait for other processes to leave the cores
    inference: tuple[Shape, ...]
    busy_cases: tuple[str, ...]  # the inference cases also timed with one core busy
    conditions: tuple[str, ...]
    accuracy: bool
    accuracy_texts: int  # rotten_tomatoes sentences for the embedding budget (a quarter as many IMDB reviews)
    classifier_steps: int
    probes: bool  # levers in their own processes (probe.py)
    pretraining: tuple[tuple[str, int], ...]  # (size, batch) at seq 128
    finetuning_batches: int
    finetuning_sorted: bool
    compile: bool
    bf16: bool


DENSE_8 = Shape("bert-base (8,128) dense", "bert-base", 8, 128, lever_variants=True)
DENSE_1 = Shape("bert-base (1,32) dense", "bert-base", 1, 32, lever_variants=True)
IMDB_32 = Shape("bert-base (32,128) IMDB reviews", "bert-base", 32, 128, texts="imdb", int8=False)
SYNTHETIC_32 = Shape("bert-base (32,128) synthetic lengths", "bert-base", 32, 128, texts="synthetic", int8=False)
MINILM_RT = Shape("MiniLM 64 rotten_tomatoes sentences", "MiniLM", 64, 128, texts="rotten_tomatoes")
GOAL_CASES = (DENSE_8.name, DENSE_1.name, MINILM_RT.name)

QUICK = Plan(rounds=5, min_rounds=3, budget_s=40, quiet_wait_s=10,
             inference=(DENSE_8, DENSE_1, IMDB_32, SYNTHETIC_32, MINILM_RT), busy_cases=GOAL_CASES,
             conditions=(QUIET, BUSY), accuracy=True, accuracy_texts=1000, classifier_steps=120, probes=False,
             pretraining=(("tiny", 32),), finetuning_batches=4, finetuning_sorted=False, compile=False, bf16=True)
FULL_INFERENCE = (DENSE_8, DENSE_1, Shape("bert-base (32,128) dense", "bert-base", 32, 128, int8=False), IMDB_32,
                  SYNTHETIC_32, Shape("bert-base (32,128) sentences and reviews", "bert-base", 32, 128, texts="mix",
                                      int8=False),
                  Shape("bert-base (8,512) IMDB reviews", "bert-base", 8, 512, texts="imdb", int8=False),
                  Shape("bert-base (8,512) synthetic lengths", "bert-base", 8, 512, texts="synthetic", int8=False),
                  MINILM_RT, Shape("MiniLM 32 sentences and reviews", "MiniLM", 32, 256, texts="mix"))
FULL = Plan(rounds=7, min_rounds=4, budget_s=90, quiet_wait_s=20, inference=FULL_INFERENCE,
            busy_cases=tuple(shape.name for shape in FULL_INFERENCE), conditions=(QUIET, BUSY), accuracy=True,
            accuracy_texts=4000, classifier_steps=480, probes=True, pretraining=(("tiny", 32), ("bert-base", 8)),
            finetuning_batches=20, finetuning_sorted=True, compile=True, bf16=True)

SMOKE = Plan(rounds=2, min_rounds=2, budget_s=5, quiet_wait_s=0.5,  # checks the pipeline, not the speed
             inference=(Shape("tiny (2,16) dense", "tiny", 2, 16, lever_variants=True),
                        Shape("tiny (8,32) synthetic lengths", "tiny", 8, 32, texts="synthetic", int8=False)),
             busy_cases=("tiny (2,16) dense",), conditions=(QUIET, BUSY), accuracy=False, accuracy_texts=0,
             classifier_steps=0, probes=False, pretraining=(), finetuning_batches=0, finetuning_sorted=False,
             compile=False, bf16=False)


def main() -> int:
    args = parse_args()
    device = Device(args.device, args.threads)
    device.setup()
    plan = SMOKE if args.smoke else FULL if args.full else QUICK
    mm = matmul_gflops(device.torch, device.inference_dtype, device.matmul_size, device.sync,
                       quiet_wait_s=plan.quiet_wait_s)
    print(f"matmul: {mm['median_gflops']:.0f} GFLOP/s ({torch.get_num_threads()} threads)", flush=True)
    results = {"machine": report.machine(device), "settings": settings(plan, args, device), "matmul": mm,
               "complete": False, "cases": []}
    stem = args.device + ("-full" if args.full else "-smoke" if args.smoke else "")
    sections = [lambda: inference.section(plan, device, report_line), lambda: accuracy.section(plan, report_line),
                lambda: probe.section(plan, device, report_line), lambda: pretraining_section(plan, device),
                lambda: finetuning_section(plan, device), lambda: compile_section(plan, device),
                lambda: bf16_section(plan, device)]
    if device.type == "cuda":
        sections = [sections[0], *sections[3:]]
    started = time.perf_counter()
    for run_section in sections:
        device.setup()  # every section starts at the plan's thread count (inference contestants change it)
        results["cases"] += run_section()
        finish(results)
        report.write(results, args.output, stem + "-partial")  # an interrupted run keeps what it measured
    results["complete"], results["seconds"] = True, time.perf_counter() - started
    return publish(results, args.output, stem)


def finish(results: dict) -> None:
    report.attach_targets(results["cases"])
    results["goals"], results["levers"] = goals.judge(results["cases"]), goals.levers(results["cases"])
    results["problems"] = honesty.publication_problems(results)


def publish(results: dict, folder: Path, stem: str) -> int:
    """Write the results where they belong: the publishable files only from a quiet run within its ceilings."""
    finish(results)
    violations = honesty.ceiling_violations(results["cases"])
    contended = honesty.contended_cases(results["cases"])
    target = stem if not (violations or contended) else stem + "-contended" if not violations else stem + "-failed"
    written = report.write(results, folder, target)
    for leftover in (folder / f"{stem}-partial.json", folder / f"{stem}-partial.md"):
        leftover.unlink(missing_ok=True)
    print("wrote", *written)
    if violations:
        print("FAILED: a claim is above its ceiling:\n  " + "\n  ".join(violations), file=sys.stderr)
        return 1
    if contended:
        print(f"CONTENDED: not published (other processes used more than {QUIET_CORES} of a core in too many "
              f"rounds of: {', '.join(contended)}); run again on a quiet machine", file=sys.stderr)
        return 3
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="every case and lever (make bench-full)")
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # the default; kept for old commands
    parser.add_argument("--smoke", action="store_true", help="tiny models, two rounds: checks the pipeline only")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=machine.usable_cores(),
                        help="torch and ONNX Runtime threads on a quiet machine (default: all cores)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for <device>[-full].json and .md")
    return parser.parse_args()


def settings(plan: Plan, args: argparse.Namespace, device: Device) -> dict:
    return {"full": args.full, "smoke": args.smoke, "rounds": plan.rounds, "min_rounds": plan.min_rounds,
            "case_budget_s": plan.budget_s, "warmup_rounds": 1, "mixed_lengths": MIXED_LENGTHS,
            "synthetic_lengths": inference.SYNTHETIC_LENGTHS, "conditions": list(plan.conditions),
            "flop_formula": FLOP_FORMULA, "memory_method": memory.METHOD[device.type],
            "inference_dtype": str(device.inference_dtype).removeprefix("torch."),
            "quiet_cores": QUIET_CORES, "quiet_wait_s": plan.quiet_wait_s,
            "timing_note": TIMING_NOTE[device.type]}


TIMING_NOTE = {
    "cpu": "every sample is bracketed by readings of /proc/stat and of this process's CPU time; a round during "
           f"which other processes used more than {QUIET_CORES} of a core is discarded while the case's time "
           "budget lasts (before each round the benchmark waits for a quiet machine). With one core busy, the busy "
           "process is the benchmark's own (a spinning Python process), tracked and not counted as other; any "
           "other process's CPU still disqualifies the round. A case left with too few quiet rounds is marked "
           "contended and the run is not published.",
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
    print(report.one_line(result), flush=True)
    return result


def release(case: Case) -> None:
    case.models.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
    if not plan.finetuning_batches:
        return results
    for sort_by_length in (False, True) if plan.finetuning_sorted else (False,):
        spec = {"kind": "finetuning", "batches": plan.finetuning_batches, "batch_size": 32,
                "sort_by_length": sort_by_length}
        case = build_case(spec, device)
        name = f"fine-tuning MiniLM-L6 rotten_tomatoes, {'length-sorted' if sort_by_length else 'file order'}"
        results.append(report_line(measure("fine-tuning", name, case, plan, device)))
        release(case)
    return results


# ----------------------------------------------------------------------------------------------------------------
# 6. torch.compile and 7. bf16 autocast, on dense bert-base (8,128) inference, against transformers.
# ----------------------------------------------------------------------------------------------------------------
def inference_spec(batch: int, seq: int, mixed: bool, **extra) -> dict:
    return {"kind": "inference", "size": "bert-base", "batch": batch, "seq": seq, "mixed": mixed, **extra}


def measure_inference(name: str, case: Case, plan: Plan, device: Device, ours: str = OURS,
                      with_memory: bool = True, mm_dtype: torch.dtype | None = None) -> dict:
    """Adds per-call latency and each contestant's share of the matmul rate (an mm of `mm_dtype`, by default the
    inference dtype, timed in the same rounds)."""
    mm, mm_flops = matmul_step(device.torch, mm_dtype or device.inference_dtype, device.matmul_size)
    result = measure("inference (transformers)", name, case, plan, device, with_memory, ours,
                     extra_steps={"matmul": mm})
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


def compile_section(plan: Plan, device: Device) -> list[dict]:
    name = "torch.compile bert-base (8,128) dense"
    if not plan.compile:
        return []
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
        return []
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
    sys.exit(main())
