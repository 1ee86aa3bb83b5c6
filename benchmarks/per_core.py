"""Per-core comparison: every contestant on one thread, timed as this thread's CPU time, in interleaved rounds.

    python benchmarks/per_core.py          # a few minutes; prints milliseconds per batch

CPU time is what other processes cannot stretch the way they stretch wall time (a descheduled thread accrues none),
so on a shared machine this shows each runtime's work per batch more steadily than `run.py` can; it says nothing
about threads. It is a check beside `make bench`, not a published figure.
"""

from __future__ import annotations

import statistics
import sys
import time


import inference
from device import Device
from inference import Shape

SHAPES = {"bert-base": (Shape("bert-base 1 x 32", "bert-base", 1, 32, lever_variants=True),
                        Shape("bert-base 8 x 128", "bert-base", 8, 128, lever_variants=True)),
          "MiniLM": (Shape("MiniLM 64 rotten_tomatoes sentences", "MiniLM", 64, 128, texts="rotten_tomatoes"),)}


def main() -> int:
    device = Device("cpu", 1)
    device.setup()
    for size, shapes in SHAPES.items():
        models = inference.build_models(size, device, with_ort=True)
        for shape in shapes:
            batch = inference.batch_inputs(shape, device)
            steps, _ = inference.contestants(shape, models, batch, device, 1, [1])
            milliseconds = cpu_times({k: v for k, v in steps.items() if not k.endswith("t]") or k.endswith(",1t]")},
                                     rounds=7 if shape.batch == 1 else 3)
            print(shape.name + ": " + ", ".join(f"{k} {v:.1f}" for k, v in milliseconds.items()), flush=True)
    return 0


def cpu_times(steps: dict, rounds: int) -> dict[str, float]:
    """Median CPU milliseconds per call, rounds alternating direction after one warm-up call each."""
    for step in steps.values():
        step()
    samples = {name: [] for name in steps}
    for round_ in range(rounds):
        for name in list(steps) if round_ % 2 == 0 else list(reversed(steps)):
            start = time.thread_time()
            steps[name]()
            samples[name].append(1000 * (time.thread_time() - start))
    return {name: statistics.median(values) for name, values in samples.items()}


if __name__ == "__main__":
    sys.exit(main())
