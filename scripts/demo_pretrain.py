"""Pretraining demo: a small BERT learns from 25,000 unlabelled movie reviews (IMDB) and the rotten_tomatoes
training sentences, from scratch, with the `cpu` recipe (minibert/pretraining/recipes.py,
docs/pretraining-recipe.md) and a fixed amount of work (optimizer steps).

    python scripts/demo_pretrain.py runs/demo/pretrain                     # the demo: DEMO_STEPS steps
    python scripts/demo_pretrain.py runs/demo/pretrain-long --steps 4000   # the recipe's full 4,000 steps

The recipe's first stage needs no network: word vectors from how often words occur together in the reviews
(minibert/pretraining/cooccurrence.py); the demo prints the nearest neighbours of a few words in that space. Then
masked-LM training; the demo prints the held-out curve with MLM accuracy split by what the input showed at each
target (only [MASK] positions measure the use of context: the model can copy an unchanged target) beside the
unigram baseline (always guessing the most frequent target), and fill-mask for a few sentences. Step 4 of the demo
(scripts/demo_finetune.py) fine-tunes the result beside the same model from random initialisation.
`scripts/demo.py` calls `demo_pretraining`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's minibert, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from minibert.inference import fill_mask  # noqa: E402
from minibert.model import BertForMaskedLM  # noqa: E402
from minibert.plumbing.machine import AUTO, machine_facts, parse_threads, set_threads  # noqa: E402
from minibert.pretraining.objective import describe_metrics  # noqa: E402
from minibert.pretraining.recipes import RECIPES  # noqa: E402
from minibert.pretraining.run import learn_tokenizer, pretrain  # noqa: E402
from minibert.tokenizer import BertTokenizer  # noqa: E402
from minibert.training import TrainingArguments, TrainResult  # noqa: E402
from movie_review_corpus import write_corpus  # noqa: E402

RECIPE = RECIPES["cpu"]
# The demo's budget: 1,000 of the recipe's 4,000 steps (about 4 minutes of pretraining on 2 cores, the first point
# of the budget curve in docs/pretraining-recipe.md); the fine-tuning step shows what it buys downstream.
DEMO_STEPS = 1000
EVAL_FRACTION = 0.01  # ~330 texts held out, ~4,000 [MASK] targets
CURVE_POINTS = 4
NEIGHBOURS = ("great", "terrible", "boring", "actor")
# Fill-mask sentences of the reviews' own kind, with the words that fit each (+ in the output: one is in the top 5).
CLOZE = [
    ("this is one of the [MASK] films i have ever seen.", {"best", "worst", "greatest", "finest", "funniest"}),
    ("the film was directed [MASK] steven spielberg.", {"by"}),
    ("what a [MASK] of time and money.", {"waste"}),
    ("i would [MASK] recommend this movie to anyone.", {"not", "highly", "definitely", "strongly", "never"}),
    ("the acting was terrible and the plot made no [MASK].", {"sense"}),
]


def print_curve(output_dir: Path) -> None:
    """Held-out metrics at each evaluation: [MASK], random-token and unchanged positions, beside the unigram
    baseline at [MASK] positions."""
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    print(f"{'step':>6} {'MLM loss':>9} {'[MASK]':>7} {'unigram':>8} {'random':>7} {'unchanged':>10} {'all':>6}")
    for r in (r for r in records if "eval_mlm_accuracy" in r):
        print(f"{r['step']:>6} {r['eval_mlm_loss']:>9.3f} {r['eval_mlm_accuracy_mask']:>7.1%} "
              f"{r['eval_mlm_unigram_accuracy_mask']:>8.1%} {r['eval_mlm_accuracy_random']:>7.1%} "
              f"{r['eval_mlm_accuracy_unchanged']:>10.1%} {r['eval_mlm_accuracy']:>6.1%}")


def print_neighbours(model: BertForMaskedLM, tokenizer: BertTokenizer, words=NEIGHBOURS) -> None:
    """The nearest words (cosine of the word embeddings) of a few words: what the distributional stage put there."""
    vectors = torch.nn.functional.normalize(model.bert.embeddings.word_embeddings.weight.detach(), dim=1)  # (V, D)
    for word in words:
        index = tokenizer.token_to_id(word)
        if index is None:
            continue
        nearest = (vectors @ vectors[index]).topk(6).indices.tolist()[1:]
        print(f"  {word:>10}: {', '.join(tokenizer.convert_ids_to_tokens(nearest))}")


def print_cloze(model: BertForMaskedLM, tokenizer: BertTokenizer) -> int:
    """Fill-mask on CLOZE; returns how many sentences have an accepted word in the top 5."""
    hits = 0
    for sentence, accepted in CLOZE:
        guesses = fill_mask(model, sentence, tokenizer=tokenizer, top_k=5)[0]
        hit = any(token in accepted for token, _ in guesses)
        hits += hit
        print(f"  {'+' if hit else ' '} {sentence:<52} " + "  ".join(f"{token} ({p:.2f})" for token, p in guesses))
    print(f"an accepted word in the top 5: {hits} of {len(CLOZE)} sentences")
    return hits


def demo_pretraining(output_dir: str | Path, steps: int = DEMO_STEPS, precision: str = AUTO,
                     threads: int | str = AUTO) -> TrainResult:
    """Pretrain the `cpu` recipe's model for `steps` optimizer steps in `precision` ("fp32", or "bf16" where the
    CPU has fast bf16 matrix units; auto chooses) on `threads` torch threads (auto: chosen from the load), then
    print the word neighbours, the held-out curve and fill-mask predictions."""
    started, cpu_started = time.perf_counter(), time.process_time()
    output_dir = Path(output_dir)
    threads_before = torch.get_num_threads()
    print(set_threads(threads).line(), flush=True)  # measured now: the machine's load may have changed since
    corpus = write_corpus(output_dir.parent / "reviews.txt")
    tokenizer = learn_tokenizer([corpus], RECIPE.vocab_size, output_dir / "tokenizer", eval_fraction=EVAL_FRACTION,
                                seed=RECIPE.options().seed)
    print(f"{tokenizer.vocab_size}-piece vocabulary learnt from {corpus} after "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    args = TrainingArguments(str(output_dir), **{**RECIPE.training, "max_steps": steps}, precision=precision,
                             eval_every=max(1, steps // CURVE_POINTS), log_every=50, progress_bar=None,
                             overwrite_output_dir=True)
    try:
        result = pretrain(args, tokenizer, corpus=[corpus], model=RECIPE.model_config(tokenizer.vocab_size),
                          options=RECIPE.options(), eval_fraction=EVAL_FRACTION, init=RECIPE.init)
        facts = machine_facts().describe()  # with the threads it trained on
    finally:
        torch.set_num_threads(threads_before)
    model = BertForMaskedLM.from_pretrained(output_dir / "final")
    print("nearest words by the trained word embeddings (the distributional stage arranged them, MLM refined them):")
    print_neighbours(model, tokenizer)
    print(f"{result.steps} steps of {args.per_device_batch_size} texts of up to {RECIPE.options().max_seq_length} "
          f"tokens ({result.tokens_per_s:.0f} tokens/s; {facts}, precision "
          f"{'auto, as chosen above' if precision == AUTO else precision}); held-out curve:")
    print_curve(output_dir)
    print(f"held-out at the end: {describe_metrics(result.final_metrics)}")
    print("fill-mask with the trained model (+: an accepted word is in the top 5):")
    print_cloze(model, tokenizer)
    print(f"pretraining demo step: {time.perf_counter() - started:.0f} s, {time.process_time() - cpu_started:.0f} s "
          f"of CPU time (corpus, vocabulary, data, word vectors, training, evaluation)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", nargs="?", default="runs/demo/pretrain")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"optimizer steps (default {DEMO_STEPS})")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=AUTO,
                        help="auto (default): bf16 only where a probe of the first step shows it faster here")
    parser.add_argument("--threads", type=parse_threads, default=AUTO, help="a number or auto (default)")
    cli = parser.parse_args()
    demo_pretraining(cli.output_dir, cli.steps, cli.precision, cli.threads)
