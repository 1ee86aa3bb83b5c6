"""The speed goals, each judged under every condition it was measured in, and what each lever bought.

A goal compares one minibert contestant with the best setting of one peer (benchmarks/inference.py) in one case.
Its figure is the median over rounds of the per-round ratio (rounds are interleaved), with the range of the
per-round ratios as its spread; a padded case also shows the ceiling padding removal allows (honesty.py).
"""

from __future__ import annotations

import operator
import statistics
from dataclasses import dataclass

import honesty


@dataclass(frozen=True)
class Goal:
    label: str
    case: str
    ours: str  # minibert contestant
    peer: str  # key of result["best"]: "ort[float32]", "ort[int8]" or "transformers"
    metric: str  # "speed": peer time / our time (higher is better); "latency": our time / peer time
    comparison: str  # ">=" or "<="
    target: float


GOALS = [
    Goal("dense bert-base (8,128) vs ONNX Runtime fused fp32", "bert-base (8,128) dense", "minibert",
         "ort[float32]", "speed", ">=", 1.0),
    Goal("batch-1 latency bert-base (1,32) vs ONNX Runtime", "bert-base (1,32) dense", "minibert", "ort[float32]",
         "latency", "<=", 1.0),
    Goal("padded MiniLM batch (64 rotten_tomatoes sentences) vs ONNX Runtime", "MiniLM 64 rotten_tomatoes sentences",
         "minibert", "ort[float32]", "speed", ">=", 1.2),
    Goal("int8 bert-base (8,128) vs ONNX Runtime int8", "bert-base (8,128) dense", "minibert[int8]", "ort[int8]",
         "speed", ">=", 1.0),
    Goal("int8 MiniLM 64 rotten_tomatoes sentences vs ONNX Runtime int8", "MiniLM 64 rotten_tomatoes sentences",
         "minibert[int8]", "ort[int8]", "speed", ">=", 1.0),
    Goal("dense bert-base (8,128) vs transformers", "bert-base (8,128) dense", "minibert", "transformers", "speed",
         ">=", 1.0),
    Goal("batch-1 latency bert-base (1,32) vs transformers", "bert-base (1,32) dense", "minibert", "transformers",
         "latency", "<=", 1.0),
]


def ratio(result: dict, ours: str, peer_contestant: str, metric: str) -> tuple[float, dict]:
    """Median and spread of the per-round ratio (see Goal.metric)."""
    seconds = result["seconds"]
    if metric == "speed":
        per_round = honesty.per_round_ratios(seconds[peer_contestant], seconds[ours])
    else:
        per_round = honesty.per_round_ratios(seconds[ours], seconds[peer_contestant])
    return statistics.median(per_round), honesty.spread(per_round)


def judge(cases: list[dict]) -> list[dict]:
    """One row per goal and condition measured: figures, ceiling (padded cases), target, met."""
    rows = []
    for goal in GOALS:
        for result in (r for r in cases if r.get("section") == "inference" and r["name"] == goal.case):
            peer = result.get("best", {}).get(goal.peer)
            if peer is None or goal.ours not in result["seconds"]:
                continue
            value, spread = ratio(result, goal.ours, peer, goal.metric)
            row = {"goal": goal.label, "case": goal.case, "condition": result["condition"], "ours": goal.ours,
                   "peer": peer, "metric": goal.metric, "ratio": value, "spread": spread,
                   "target": f"{goal.comparison} {goal.target:.2f}x",
                   "met": {">=": operator.ge, "<=": operator.le}[goal.comparison](value, goal.target),
                   "ours_ms": result["latency_ms"][goal.ours], "peer_ms": result["latency_ms"][peer],
                   "contended": result["timing"]["contended"]}
            if goal.ours == "minibert" and peer in result.get("ratio_ceilings", {}):
                row["ceiling"] = result["ratio_ceilings"][peer]
                if goal.metric == "latency":
                    row["ceiling"] = 1 / row["ceiling"]  # the lowest latency ratio padding removal allows
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Levers: each variant against the contestant it differs from by one change.
# ----------------------------------------------------------------------------------------------------------------
LEVERS = [  # (what, faster variant, baseline)
    ("fast path (one Q/K/V product + packed weights)", "minibert", "minibert[plain]"),
    ("one Q/K/V product alone", "minibert[qkv only]", "minibert[plain]"),
    ("weights packed for short inputs alone", "minibert[packed only]", "minibert[plain]"),
    ("bias + GELU fused into the feed-forward product (oneDNN)", "minibert[gelu fused]", "minibert"),
    ("int8 (per-token scales, oneDNN)", "minibert[int8]", "minibert"),
]


def levers(cases: list[dict]) -> list[dict]:
    """Speed-up of each lever (baseline time / variant time, per round), per case and condition measured."""
    rows = []
    for result in (r for r in cases if r.get("section") == "inference"):
        seconds = result["seconds"]
        pairs = [(what, variant, base) for what, variant, base in LEVERS if variant in seconds and base in seconds]
        thread_variants = [n for n in seconds if n.startswith("minibert[") and n.endswith("t]")]
        for name in thread_variants:
            pairs.append((f"threads: {result['contestants']['minibert']['threads']} (the rule's choice) instead "
                          f"of {result['contestants'][name]['threads']}", "minibert", name))
        for what, variant, base in pairs:
            per_round = honesty.per_round_ratios(seconds[base], seconds[variant])
            rows.append({"lever": what, "case": result["name"], "condition": result["condition"],
                         "speedup": statistics.median(per_round), "spread": honesty.spread(per_round),
                         "contended": result["timing"]["contended"]})
    return rows
