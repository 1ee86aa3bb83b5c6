"""output_dir/curves.png: training and evaluation loss, and evaluation accuracies, against the step."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from minibert.plumbing.atomic_files import atomic_path
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
    _plot_losses(axes[0][0], records)
    if accuracy_keys:
        _plot_accuracies(axes[0][1], records, accuracy_keys)
    fig.tight_layout()
    with atomic_path(image_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _plot_losses(axis, records: list[dict]) -> None:
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            axis.plot(*zip(*points), label=label, marker="o" if key.startswith("eval") else None)
    axis.set(xlabel="step", ylabel="loss", title="loss")
    axis.legend()


def _plot_accuracies(axis, records: list[dict], keys: list[str]) -> None:
    for key in keys:
        axis.plot(*zip(*[(r["step"], r[key]) for r in records if key in r]), label=key, marker="o")
    axis.set(xlabel="step", ylabel="accuracy", title="evaluation accuracy")
    axis.legend()
