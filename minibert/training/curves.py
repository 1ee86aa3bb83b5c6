"""output_dir/curves.png: training and evaluation loss, and evaluation accuracies, against the step."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from minibert.io import atomic_path
from minibert.training.reporting import MetricsLog

logger = logging.getLogger("minibert")


@functools.cache
def _pyplot():
    """matplotlib's pyplot, or None (after one info line) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed; no curves.png (pip install matplotlib)")
        return None
    return plt


def plot_curves(metrics_path: Path, image_path: Path) -> None:
    """Draw the curves from metrics.jsonl, when matplotlib is installed."""
    plt = _pyplot()
    if plt is None:
        return
    records = MetricsLog.read(metrics_path)
    accuracy_keys = sorted({k for r in records for k in r if k.startswith("eval_") and "accuracy" in k})
    fig, axes = plt.subplots(1, 2 if accuracy_keys else 1, figsize=(11 if accuracy_keys else 6, 4), squeeze=False)
    loss_axis = axes[0][0]
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            loss_axis.plot(*zip(*points), label=label, marker="o" if key.startswith("eval") else None)
    loss_axis.set(xlabel="step", ylabel="loss", title="loss")
    loss_axis.legend()
    if accuracy_keys:
        accuracy_axis = axes[0][1]
        for key in accuracy_keys:
            baseline = "unigram" in key or "majority" in key  # what guessing scores: dashed, no markers
            accuracy_axis.plot(*zip(*[(r["step"], r[key]) for r in records if key in r]), label=key,
                               linestyle="--" if baseline else "-", marker=None if baseline else "o")
        accuracy_axis.set(xlabel="step", ylabel="accuracy", title="evaluation accuracy")
        accuracy_axis.legend()
    fig.tight_layout()
    with atomic_path(image_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
