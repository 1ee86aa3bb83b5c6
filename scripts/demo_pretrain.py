"""Pretraining demo: a small BERT learns from 10,000 Wikipedia lead sections on a CPU, from scratch, with the
`cpu` recipe (minibert/pretraining/recipes.py, docs/pretraining-recipe.md) and a fixed amount of work (optimizer steps).

    python scripts/demo_pretrain.py runs/demo/pretrain                     # the demo: DEMO_STEPS steps
    python scripts/demo_pretrain.py runs/demo/pretrain-long --steps 12000  # a longer run
    python scripts/demo_pretrain.py runs/demo/continue --continue          # continue all-MiniLM-L6-v2 instead

It prints the held-out curve with MLM accuracy split by what the input showed at each target (only [MASK]
positions measure the use of context: the model can copy an unchanged target, and it learns copying long before
context), beside the unigram baseline (always guessing the most frequent target); then fill-mask for five
sentences and the top-5 hit rate on held-out cloze sentences of the same kinds (scripts/pretraining_cloze.py).
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
from minibert.model import BertForMaskedLM, BertForPreTraining  # noqa: E402
from minibert.pretraining.run import learn_tokenizer, pretrain  # noqa: E402
from minibert.pretraining.recipes import RECIPES  # noqa: E402
from minibert.plumbing.machine import AUTO, machine_facts, parse_threads, set_threads  # noqa: E402
from minibert.tokenizer import BertTokenizer  # noqa: E402
from minibert.training import TrainingArguments, TrainResult  # noqa: E402
from minibert.pretraining.objective import describe_metrics  # noqa: E402
from pretraining_cloze import DEMO, HELD_OUT, hit_rate, top_k_hits  # noqa: E402

RECIPE = RECIPES["cpu"]
DEMO_STEPS = RECIPE.training["max_steps"]
EVAL_FRACTION = 0.01  # ~100 documents, ~1,500 held-out targets: an evaluation costs about a second
CURVE_POINTS = 8


def package_path(name: str) -> Path:
    from minibert.plumbing.demo_assets import MissingAssetError, asset_path
    try:
        return asset_path(name)
    except MissingAssetError as error:
        sys.exit(f"demo: {error}")


def print_curve(output_dir: Path) -> None:
    """Held-out metrics at each evaluation: [MASK], random-token and unchanged positions, beside the unigram
    baseline at [MASK] positions."""
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    evaluations = [r for r in records if "eval_mlm_accuracy" in r]
    nsp = "eval_nsp_accuracy" in evaluations[-1]
    print(f"{'step':>6} {'MLM loss':>9} {'[MASK]':>7} {'unigram':>8} {'random':>7} {'unchanged':>10} {'all':>6}"
          + (f" {'NSP':>6} {'majority':>9}" if nsp else ""))
    for r in evaluations:
        print(f"{r['step']:>6} {r['eval_mlm_loss']:>9.3f} {r['eval_mlm_accuracy_mask']:>7.1%} "
              f"{r['eval_mlm_unigram_accuracy_mask']:>8.1%} {r['eval_mlm_accuracy_random']:>7.1%} "
              f"{r['eval_mlm_accuracy_unchanged']:>10.1%} {r['eval_mlm_accuracy']:>6.1%}"
              + (f" {r['eval_nsp_accuracy']:>6.1%} {r['eval_nsp_majority_accuracy']:>9.1%}" if nsp else ""))


def print_cloze(final: Path) -> dict[str, float]:
    """Fill-mask on the demo sentences, and the top-5 hit rate on those and on the held-out cloze sentences."""
    config = json.loads((final / "config.json").read_text(encoding="utf-8"))
    model_class = BertForPreTraining if config["architectures"] == ["BertForPreTraining"] else BertForMaskedLM
    model, tokenizer = model_class.from_pretrained(final), BertTokenizer.from_pretrained(final)
    demo = top_k_hits(model, tokenizer, DEMO)
    for sentence, guesses, hit in demo:
        print(f"  {'+' if hit else ' '} {sentence:<48} " + "  ".join(f"{token} ({p:.2f})" for token, p in guesses))
    held_out = top_k_hits(model, tokenizer, HELD_OUT)
    print(f"right word in the top 5: {sum(h for *_, h in demo)} of {len(demo)} demo sentences, "
          f"{sum(h for *_, h in held_out)} of {len(held_out)} held-out cloze sentences ({hit_rate(held_out):.0%})")
    return {"demo_top5": hit_rate(demo), "held_out_top5": hit_rate(held_out)}


def demo_pretraining(output_dir: str | Path, steps: int | None = None, precision: str = AUTO,
                     threads: int | str = AUTO, continue_minilm: bool = False) -> TrainResult:
    """Pretrain for `steps` optimizer steps (DEMO_STEPS from scratch, 300 when continuing) in `precision`
    ("fp32", or "bf16" where the CPU has fast bf16 matrix units) on `threads` torch threads (None: chosen from
    the load), and print the held-out curve, fill-mask predictions and cloze hit rates. From scratch with the
    `cpu` recipe, a vocabulary learnt from the training documents; `continue_minilm` continues all-MiniLM-L6-v2
    instead (bert-base-uncased's vocabulary, new MLM head)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    output_dir = Path(output_dir)
    threads_before = torch.get_num_threads()
    print(set_threads(threads).line(), flush=True)  # measured now: the machine's load may have changed since
    corpus = package_path("wikipedia")
    options = RECIPE.options()
    if continue_minilm:
        minilm = package_path("minilm")
        tokenizer, model, init_from, learning_rate = minilm, None, minilm, 1e-3
        steps = steps or 300
    else:
        tokenizer = learn_tokenizer([corpus], RECIPE.vocab_size, output_dir / "tokenizer",
                                    eval_fraction=EVAL_FRACTION, seed=options.seed)
        print(f"{tokenizer.vocab_size}-token vocabulary ready after {time.perf_counter() - started:.0f} s")
        model, init_from, learning_rate = RECIPE.model_config(tokenizer.vocab_size), None, \
            RECIPE.training["learning_rate"]
        steps = steps or DEMO_STEPS
    training = {**RECIPE.training, "max_steps": steps, "learning_rate": learning_rate}
    args = TrainingArguments(str(output_dir), **training, precision=precision,
                             eval_every=max(1, steps // CURVE_POINTS), log_every=50, progress_bar=None,
                             overwrite_output_dir=True)
    try:
        # The recipe's initialisation is half of what makes it learn context in minutes (docs/pretraining-recipe.md).
        result = pretrain(args, tokenizer, corpus=[corpus], model=model, init_from=init_from, options=options,
                          eval_fraction=EVAL_FRACTION, init="bert" if continue_minilm else RECIPE.init)
        facts = machine_facts().describe()  # with the threads it trained on
    finally:
        torch.set_num_threads(threads_before)
    print(f"{result.steps} steps of {args.per_device_batch_size} examples of up to {options.max_seq_length} tokens "
          f"({result.tokens_per_s:.0f} tokens/s; {facts}, precision "
          f"{'auto, as chosen above' if precision == AUTO else precision}); held-out curve:")
    print_curve(output_dir)
    print(f"held-out at the end: {describe_metrics(result.final_metrics)}")
    print("fill-mask with the trained model (+: an accepted word is in the top 5):")
    print_cloze(output_dir / "final")
    print(f"pretraining demo step: {time.perf_counter() - started:.0f} s, {time.process_time() - cpu_started:.0f} s "
          f"of CPU time (vocabulary, data, training, evaluation)")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", nargs="?", default="runs/demo/pretrain")
    parser.add_argument("--steps", type=int, help=f"optimizer steps (default {DEMO_STEPS}; 300 with --continue)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=AUTO,
                        help="auto (default): bf16 only where a probe of the first step shows it faster here")
    parser.add_argument("--threads", type=parse_threads, default=AUTO, help="a number or auto (default)")
    parser.add_argument("--continue", dest="continue_minilm", action="store_true",
                        help="continue pretraining all-MiniLM-L6-v2 instead of starting from scratch")
    cli = parser.parse_args()
    demo_pretraining(cli.output_dir, cli.steps, cli.precision, cli.threads, cli.continue_minilm)
