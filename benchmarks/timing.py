"""Timing: interleaved medians, the machine's matrix-multiply rate, and the FLOP count of a BERT forward.

The machine this runs on shares its cores with other tenants: its matmul rate drifts by 2-3x over seconds. Every
comparison is therefore interleaved (each contestant runs once per round) so that a drift hits all of them alike,
and rounds during which other processes took CPU are discarded where the time budget allows.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from contention import QUIET_CORES, ForeignCpu, wait_for_quiet

Step = Callable[[], object]


@dataclass
class Timings:
    seconds: dict[str, list[float]]  # per contestant, one sample per kept round
    rounds_run: int
    rounds_kept: int
    contended: bool  # too few quiet rounds: contended rounds were kept too
    contention: list[float]  # per round run: the most CPU (in cores) other processes used during a sample
    waited_s: float  # time spent waiting for a quiet machine
    controlled: list[float]  # per round run: the least CPU (in cores) our own busy process got during a sample

    def summary(self) -> dict:
        summary = {"rounds_run": self.rounds_run, "rounds_kept": self.rounds_kept, "contended": self.contended,
                   "contention_cores": [round(c, 2) for c in self.contention], "waited_s": round(self.waited_s, 1)}
        if any(self.controlled):
            summary["busy_process_cores"] = [round(c, 2) for c in self.controlled]
        return summary


def interleaved_times(steps: dict[str, Step], sync: Callable[[], None], rounds: int, warmup: int = 1,
                      min_rounds: int = 3, budget_s: float | None = None, min_sample_s: float = 0.25,
                      quiet_wait_s: float = 30.0) -> Timings:
    """Seconds per call of each step, one sample per round.

    Rounds alternate direction (A,B,C then C,B,A) so that neither a linear drift nor running first favours one
    contestant. A step shorter than `min_sample_s` is repeated within its sample and the mean taken. Each round
    waits (up to `quiet_wait_s`) for other processes to leave the cores, and a round during which they used more
    than QUIET_CORES anyway is discarded while `budget_s` lasts; after that, or once `rounds` quiet rounds are in,
    it stops (running at least `min_rounds`)."""
    warm_seconds = {name: min_sample_s for name in steps}
    for _ in range(warmup):
        for name, step in steps.items():
            warm_seconds[name] = _time_calls(step, sync, 1)[0]
    # Each contestant repeats its call until a sample lasts about min_sample_s: a slow contestant does not make
    # the fast ones run for its duration, and a fast one is not timed on a single short call.
    calls = {name: max(1, math.ceil(min_sample_s / max(seconds, 1e-6))) for name, seconds in warm_seconds.items()}
    all_rounds: list[tuple[dict[str, float], float]] = []
    start, waited = time.perf_counter(), 0.0
    while True:
        waited += wait_for_quiet(quiet_wait_s)
        order = list(steps) if len(all_rounds) % 2 == 0 else list(reversed(steps))
        samples = {name: _time_calls(steps[name], sync, calls[name]) for name in order}
        all_rounds.append(({k: s for k, (s, _, _) in samples.items()}, max(c for _, c, _ in samples.values()),
                           min(b for _, _, b in samples.values())))
        quiet = [r for r in all_rounds if r[1] <= QUIET_CORES]
        over_budget = budget_s is not None and time.perf_counter() - start > budget_s
        if len(quiet) >= rounds or (len(all_rounds) >= min_rounds and over_budget):
            break
    kept = quiet[-rounds:] if len(quiet) >= min_rounds else all_rounds
    return Timings({name: [r[0][name] for r in kept] for name in steps}, len(all_rounds), len(kept),
                   contended=len(quiet) < min_rounds, contention=[r[1] for r in all_rounds], waited_s=waited,
                   controlled=[r[2] for r in all_rounds])


def _time_calls(step: Step, sync: Callable[[], None], calls: int) -> tuple[float, float, float]:
    """Seconds per call, the CPU other processes used meanwhile and the CPU our own busy process got (cores)."""
    sync()
    cpu = ForeignCpu()
    start = time.perf_counter()
    for _ in range(calls):
        step()
    sync()
    wall = time.perf_counter() - start
    return wall / calls, cpu.cores(wall), cpu.controlled_cores(wall)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


# ----------------------------------------------------------------------------------------------------------------
# The machine's matrix-multiply rate: the ceiling a model made of matrix multiplies can approach.
# ----------------------------------------------------------------------------------------------------------------
def matmul_step(device: torch.device, dtype: torch.dtype, n: int) -> tuple[Step, float]:
    """One (n, n) @ (n, n) product into a preallocated output (so no allocation is timed), and its FLOPs."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    return (lambda: torch.mm(a, b, out=out)), 2.0 * n ** 3


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int, sync: Callable[[], None],
                  rounds: int = 10, budget_s: float = 20.0, quiet_wait_s: float = 5.0) -> dict:
    step, flops = matmul_step(device, dtype, n)
    seconds = interleaved_times({"mm": step}, sync, rounds=rounds, warmup=2, min_sample_s=0.0, budget_s=budget_s,
                                quiet_wait_s=quiet_wait_s).seconds["mm"]
    rates = sorted(flops / s / 1e9 for s in seconds)
    return {"size": n, "dtype": str(dtype).removeprefix("torch."), "median_gflops": statistics.median(rates),
            "min_gflops": rates[0], "max_gflops": rates[-1]}


# ----------------------------------------------------------------------------------------------------------------
# Useful FLOPs of an encoder forward, counted on real tokens only.
# ----------------------------------------------------------------------------------------------------------------
FLOP_FORMULA = ("per real token per layer: 2*(4*D^2 + 2*D*I) for the dense layers (Q, K, V, attention output, "
                "two feed-forward) + 4*T*D for the attention scores and the weighted sum, T = the real length of "
                "the token's sequence; embeddings, pooler and heads are not counted; one multiply-add = 2 FLOPs")


def encoder_flops(hidden: int, intermediate: int, layers: int, lengths: list[int]) -> float:
    """FLOPs of one forward over sequences with these real lengths (see FLOP_FORMULA)."""
    dense = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)
    return float(layers * sum(n * (dense + 4 * n * hidden) for n in lengths))
