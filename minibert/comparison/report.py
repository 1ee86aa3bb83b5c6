"""What a comparison shows: the table (`table`), OUT/results.json (settings, every run, the choices, the summary,
the machine) and OUT/comparison.png (each arm's test score per seed, and the paired margins with their
intervals; skipped, with one line, without matplotlib)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minibert.plumbing.atomic_files import atomic_path, atomic_write_text
from minibert.plumbing.machine import machine_facts

logger = logging.getLogger("minibert")

RESULTS_FILE = "results.json"
# Metrics shown in points (x 100): shares of something. Others (correlations, MCC, losses) as they are.
PERCENT_METRICS = ("accuracy", "f1", "macro_f1", "exact_match", "precision", "recall", "span_accuracy")


@dataclass
class Comparison:
    """What compare() returns and the report shows."""
    output_dir: Path
    metric: str  # the task's main metric: what chooses the rates and what the margins are in
    splits: dict[str, int]  # examples per split
    runs: list[dict[str, Any]]  # every run's record (runs.py)
    summary: dict[str, Any]  # per arm: chosen rate, test per seed, mean, sd; the margins; the baseline
    machine: dict[str, Any]  # CPU model, capability, threads per run, precision (report.machine_record)
    plot: Path | None = None  # None when matplotlib is missing


def machine_record(precision: str, jobs: int) -> dict[str, Any]:
    """The machine facts every figure names; with several jobs each run had one thread."""
    facts = machine_facts(precision).as_dict()
    facts["threads"] = 1 if jobs > 1 else torch.get_num_threads()
    facts["jobs"] = jobs
    return facts


def write_results(comparison: Comparison, settings: dict[str, Any]) -> Path:
    path = comparison.output_dir / RESULTS_FILE
    record = {"settings": settings, "machine": comparison.machine, "metric": comparison.metric,
              "splits": comparison.splits, "summary": comparison.summary,
              "runs": [{k: v for k, v in run.items() if k != "key"} for run in comparison.runs]}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def shown(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if metric in PERCENT_METRICS else f"{value:.3f}"


def table(comparison: Comparison) -> str:
    """The report as lines of text: each arm's test score per seed with mean ± sd, the baseline, the margins."""
    summary, metric = comparison.summary, comparison.metric
    unit = " (points)" if metric in PERCENT_METRICS else ""
    seeds = summary["seeds"]
    sizes = comparison.splits
    lines = [f"test {metric}{unit} at each arm's learning rate (chosen on validation), over seeds "
             f"{' '.join(map(str, seeds))}; {sizes['train']} train, {sizes['validation']} validation, "
             f"{sizes['test']} test examples",
             f"{'arm':<22} {'lr':>7} " + " ".join(f"{'seed ' + str(s):>8}" for s in seeds) + "   mean ± sd"]
    for name, arm in summary["arms"].items():
        per_seed = " ".join(f"{shown(value, metric):>8}" for value in arm["test"])
        spread = "" if arm["sd"] is None else f" ± {shown(arm['sd'], metric)}"
        lines.append(f"{name[:22]:<22} {arm['learning_rate']:>7g} {per_seed}   {shown(arm['mean'], metric)}{spread}")
    baseline = summary.get("baseline")
    if baseline is not None:
        chosen = baseline["chosen"]
        lines.append(f"{'TF-IDF + logistic reg.':<22} {'':>7} {'':>{9 * len(seeds) - 1}}   "
                     f"{shown(baseline['test'][metric], metric)} ({chosen['ngrams']}, C {chosen['C']:g})")
    for name, margin in summary["margins"].items():
        lines.append(margin_line(name, margin, metric))
    lines.append(f"machine: {describe(comparison.machine)}")
    return "\n".join(lines)


def margin_line(name: str, margin: dict[str, Any], metric: str) -> str:
    scale = 100 if metric in PERCENT_METRICS else 1
    per_seed = ", ".join(f"{scale * d:+.{1 if scale == 100 else 3}f}" for d in margin["per_seed"])
    digits = 1 if scale == 100 else 3
    mean = f"{scale * margin['mean']:+.{digits}f}"
    spread = "" if margin["sd"] is None else f" ± {scale * margin['sd']:.{digits}f}"
    interval = "" if margin["low"] is None else \
        f", 95% interval [{scale * margin['low']:+.{digits}f}, {scale * margin['high']:+.{digits}f}]"
    return (f"margin {name}: {mean}{spread} (per seed {per_seed}){interval}: {margin['verdict']}; every seed "
            f"positive: {'yes' if margin['every_seed_positive'] else 'no'}")


def describe(machine: dict[str, Any]) -> str:
    jobs = f", {machine['jobs']} runs at a time" if machine.get("jobs", 1) > 1 else ""
    return (f"{machine['cpu']}, capability {machine['cpu_capability']}, {machine['threads']} thread(s) per run"
            f"{jobs}, precision {machine['precision']}, torch {machine['torch']}")


def caption(comparison: Comparison) -> str:
    """What the figure was measured on: the splits, the seeds and the machine (every published figure names it)."""
    sizes, seeds = comparison.splits, comparison.summary["seeds"]
    return (f"{sizes['train']} train, {sizes['validation']} validation, {sizes['test']} test examples; seeds "
            f"{' '.join(map(str, seeds))}; {describe(comparison.machine)}")


def plot_comparison(comparison: Comparison, path: Path) -> Path | None:
    """comparison.png, or None (after one line) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("no comparison.png: matplotlib is not installed (pip install 'minibert[plot]')")
        return None
    summary, metric = comparison.summary, comparison.metric
    fig, (scores, margins) = plt.subplots(1, 2, figsize=(11, 4.4))
    _plot_scores(scores, summary, metric)
    _plot_margins(margins, summary, metric)
    fig.text(0.5, 0.01, caption(comparison), ha="center", va="bottom", fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _plot_scores(axis, summary: dict[str, Any], metric: str) -> None:
    names = list(summary["arms"])
    for x, name in enumerate(names):
        arm = summary["arms"][name]
        axis.scatter([x] * len(arm["test"]), arm["test"], color="C0", alpha=0.6, zorder=3)
        axis.errorbar([x], [arm["mean"]], yerr=[arm["sd"] or 0.0], fmt="_", color="black", capsize=8,
                      markersize=20, zorder=4)
    if summary.get("baseline"):
        axis.axhline(summary["baseline"]["test"][metric], color="C3", linestyle="--", label="TF-IDF + log. reg.")
        axis.legend()
    axis.set_xlim(-0.5, len(names) - 0.5)
    axis.set_xticks(range(len(names)), [f"{name}\nlr {summary['arms'][name]['learning_rate']:g}" for name in names])
    axis.set(ylabel=f"test {metric}", title="each seed, mean ± sd")


def _plot_margins(axis, summary: dict[str, Any], metric: str) -> None:
    names = list(summary["margins"])
    for x, name in enumerate(names):
        margin = summary["margins"][name]
        axis.scatter([x] * len(margin["per_seed"]), margin["per_seed"], color="C0", alpha=0.6, zorder=3)
        if margin["low"] is not None:
            below, above = margin["mean"] - margin["low"], margin["high"] - margin["mean"]
            axis.errorbar([x], [margin["mean"]], yerr=[[below], [above]], fmt="o", color="black", capsize=8, zorder=4)
    axis.axhline(0.0, color="grey", linewidth=1)
    axis.set_xlim(-0.5, len(names) - 0.5)
    axis.set_xticks(range(len(names)), [name.replace(" - ", "\n- ") for name in names])
    axis.set(ylabel=f"test {metric} difference", title="paired margin per seed, 95% t-interval")
