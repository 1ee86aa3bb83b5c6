"""`minibert explain --png DIR`: one attention heat-map figure per layer (every head side by side), for papers and
slides. Needs matplotlib (`pip install 'minibert[plot]'`), imported only here."""

from __future__ import annotations

import math
import os
from pathlib import Path

from minibert.errors import InputError
from minibert.explain.journey import Journey
from minibert.plumbing.atomic_files import atomic_path, check_output_folder


def require_matplotlib() -> None:
    """Fail early, before the model runs, when the plotting extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("--png needs matplotlib: pip install 'minibert[plot]' (or pip install matplotlib)") from None


def save_heatmaps(journey: Journey, folder: str | os.PathLike, dpi: int = 120) -> list[Path]:
    """Write layer_01.png ... layer_NN.png to `folder`: each head's (T, T) attention, queries down, keys across,
    with the sentence-pair boundary drawn. Returns the paths in layer order."""
    require_matplotlib()
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    folder = check_output_folder(folder, "--png")
    tokens, heads = journey.tokens, journey.config.num_attention_heads
    segments = [p.segment for p in journey.pieces]
    b_start = segments.index(1) if 1 in segments else None
    columns = min(heads, 4)
    rows = math.ceil(heads / columns)
    cell = max(2.2, 0.16 * len(tokens) + 0.8)  # inches per head, so token labels stay legible
    paths = []
    for index, layer in enumerate(journey.trace.layers):
        # Shared axes: token labels only along the left column and the bottom row (less clutter, faster to draw).
        figure, axes = plt.subplots(rows, columns, figsize=(cell * columns, cell * rows + 0.4), squeeze=False,
                                    sharex=True, sharey=True)
        axes[0, 0].set_xticks(range(len(tokens)), tokens)
        axes[0, 0].set_yticks(range(len(tokens)), tokens)
        for head, ax in enumerate(axes.flat):
            ax.tick_params(axis="x", labelrotation=90, labelsize=6)
            ax.tick_params(axis="y", labelsize=6)
            ax.label_outer()
            if head >= heads:
                ax.axis("off")
                continue
            ax.imshow(layer.attention[head].float().cpu().numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
            ax.set_title(f"head {head + 1}", fontsize=9)
            if b_start is not None:
                ax.axhline(b_start - 0.5, color="tab:orange", linewidth=0.8)
                ax.axvline(b_start - 0.5, color="tab:orange", linewidth=0.8)
        figure.suptitle(f"layer {index + 1} of {len(journey.trace.layers)}: attention (query rows, key columns)",
                        fontsize=10)
        figure.tight_layout()
        path = folder / f"layer_{index + 1:02d}.png"
        try:
            with atomic_path(path) as tmp:
                figure.savefig(tmp, dpi=dpi, format="png")
        except OSError as e:
            raise InputError(f"--png {path}: cannot write ({e.strerror})") from None
        finally:
            plt.close(figure)
        paths.append(path)
    return paths
