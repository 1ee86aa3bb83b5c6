"""minibert pretrain (--corpus PATH... | --data DIR) --tokenizer T (--preset NAME | --config FILE | --init-from CKPT)
--output-dir DIR: pretrain BERT with masked LM (+ NSP) and write DIR/final, a checkpoint transformers loads.

`--recipe cpu` (see minibert.recipes) brings its own model size and learns its own vocabulary, so
`minibert pretrain --corpus wiki.json --recipe cpu -o runs/cpu` is a whole run; flags given override the recipe.

Data-parallel on several processes: `torchrun --nproc_per_node N -m minibert pretrain ...` (rank 0 prepares the
data while the others wait). `minibert -v pretrain ...` also logs data preparation and the time budget."""

import argparse
import os
from pathlib import Path

from minibert.cli.arg_types import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from minibert.cli.prepare_pretraining import (add_corpus_arguments, add_data_arguments, data_options,
                                              given_data_options)
from minibert.config import PRESETS
from minibert.data.pretraining import PretrainingOptions
from minibert.errors import ConfigError
from minibert.pretraining_init import INITS
from minibert.recipes import DEFAULT_RECIPE, RECIPES, Recipe
from minibert.training.args import PRECISIONS


# flag -> TrainingArguments field (the flags pretrain passes on), for error messages (minibert.errors.spelled)
FIELDS = {"max_steps": "max_steps", "epochs": "num_epochs", "batch_size": "per_device_batch_size",
          "grad_accum": "grad_accumulation_steps", "lr": "learning_rate", "warmup_steps": "warmup_steps",
          "warmup_ratio": "warmup_ratio", "weight_decay": "weight_decay", "precision": "precision",
          "device": "device", "eval_every": "eval_every", "save_every": "save_every", "log_every": "log_every",
          "seed": "seed", "resume": "resume", "overwrite_output_dir": "overwrite_output_dir",
          "num_workers": "num_workers"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", nargs="+", metavar="PATH", help="text files or folders to prepare")
    source.add_argument("--data", metavar="DIR", help="data prepared by `minibert prepare-pretraining`")
    add_corpus_arguments(p)
    add_data_arguments(p)
    p.add_argument("--tokenizer", help="tokenizer folder, vocab.txt or hub id (default: the --init-from checkpoint's, "
                   "or one the recipe learns from the corpus into OUTPUT_DIR/tokenizer)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE,
                   help="settings to start from; flags given override it (default: bert, the original settings; "
                        "cpu: learns context in minutes on a CPU, with its own model size and vocabulary size)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--preset", choices=sorted(PRESETS),
                       help="a model size, trained from scratch (default: the recipe's model size, if it has one)")
    model.add_argument("--config", metavar="FILE", help="a config.json, trained from scratch (default: none)")
    model.add_argument("--init-from", metavar="CKPT",
                       help="continue pretraining a checkpoint, folder or hub id (default: none, from scratch)")
    p.add_argument("--init", choices=sorted(INITS), help="how a model from scratch starts (default: the recipe's; bert: "
                   "BERT's initialisation; local-attention: attention starts local, see minibert.pretraining_init)")
    p.add_argument("--output-dir", "-o", required=True, help="run folder: data/, checkpoints/, metrics, final/")

    run = p.add_argument_group("training")
    length = run.add_mutually_exclusive_group()
    # Defaults of None: the recipe's setting, else TrainingArguments' (the original BERT settings).
    length.add_argument("--max-steps", type=positive_int,
                        help="optimizer steps (default: the recipe's, else --epochs passes over the data)")
    length.add_argument("--epochs", type=positive_int, help="passes over the data (default 1)")
    run.add_argument("--max-minutes", type=positive_float,
                     help="set --max-steps from a timing so that training and evaluation take about this long "
                          "(default: no time budget)")
    run.add_argument("--batch-size", type=positive_int,
                     help="examples per device per micro-batch (default: the recipe's, else 32)")
    run.add_argument("--grad-accum", "--grad-accumulation", type=positive_int, default=1,
                     help="micro-batches per optimizer step")
    run.add_argument("--lr", type=positive_float, help="peak learning rate (AdamW; default: the recipe's, else 1e-4)")
    warmup = run.add_mutually_exclusive_group()
    warmup.add_argument("--warmup-steps", type=non_negative_int,
                        help="steps of linear warm-up (default: the recipe's, else 0)")
    warmup.add_argument("--warmup-ratio", type=fraction,
                        help="warm-up as a share of all steps (default: the recipe's, else 0)")
    run.add_argument("--weight-decay", type=non_negative_float,
                     help="AdamW weight decay (default: the recipe's, else 0.01)")
    run.add_argument("--precision", choices=PRECISIONS, default="fp32",
                     help="auto: bf16 where a probe of the first step shows it faster here (on a CPU without "
                          "native bf16, bf16 is ~10x slower)")
    run.add_argument("--eval-every", type=non_negative_int, default=0,
                     help="steps between evaluations (0: at the end only)")
    run.add_argument("--save-every", type=non_negative_int, default=0,
                     help="steps between checkpoints (0: at the end only)")
    run.add_argument("--log-every", type=positive_int, default=10,
                     help="steps between metrics.jsonl lines and --no-progress log lines")
    run.add_argument("--seed", type=non_negative_int, default=0, help="model init, data order and dropout")
    resume = run.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output-dir (an "
                        "error when there is none); a changed --lr, --max-steps or --epochs is applied and said")
    resume.add_argument("--overwrite-output-dir", action="store_true",
                        help="start a new run in an --output-dir that holds an earlier one (its files are replaced "
                             "as the new run saves its own)")
    run.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    run.add_argument("--num-workers", type=non_negative_int, default=0, help="data loader processes")
    run.add_argument("--no-progress", action="store_true",
                     help="log a line every --log-every steps instead of a progress bar")


# Flags that override a recipe's training settings, and the TrainingArguments field each sets.
TRAINING_FLAGS = {"max_steps": "max_steps", "epochs": "num_epochs", "batch_size": "per_device_batch_size",
                  "lr": "learning_rate", "warmup_steps": "warmup_steps", "warmup_ratio": "warmup_ratio",
                  "weight_decay": "weight_decay"}
# Flags that exclude each other: giving one drops the recipe's setting of the other.
EXCLUSIVE = {"max_steps": "num_epochs", "num_epochs": "max_steps", "warmup_steps": "warmup_ratio",
             "warmup_ratio": "warmup_steps"}


def training_settings(args: argparse.Namespace, recipe: Recipe) -> dict:
    """The recipe's training settings with the flags given on top."""
    given = {field: getattr(args, flag) for flag, field in TRAINING_FLAGS.items() if getattr(args, flag) is not None}
    settings = {k: v for k, v in recipe.training.items() if EXCLUSIVE.get(k) not in given}
    return {**settings, **given}


def run(args: argparse.Namespace) -> int:
    from minibert.pretrain import learn_tokenizer, load_tokenizer, pretrain
    from minibert.recipes import recipe
    from minibert.training.args import TrainingArguments
    from minibert.training.pretraining import describe_metrics
    chosen = recipe(args.recipe)
    training = TrainingArguments(
        args.output_dir, **training_settings(args, chosen), grad_accumulation_steps=args.grad_accum,
        precision=args.precision, device=args.device, eval_every=args.eval_every, save_every=args.save_every,
        log_every=args.log_every, seed=args.seed, resume=args.resume, overwrite_output_dir=args.overwrite_output_dir,
        num_workers=args.num_workers,
        progress_bar=not args.no_progress)
    given = given_data_options(args)
    if args.data is not None:  # data options were fixed at preparation; pretrain() refuses new ones
        options = data_options(args)
    else:
        options = chosen.options(**given) if chosen.data or given else None
    tokenizer = args.tokenizer
    if tokenizer is None and args.init_from is None and args.corpus and chosen.vocab_size:
        tokenizer = learn_tokenizer(args.corpus, chosen.vocab_size, Path(args.output_dir) / "tokenizer",
                                    corpus_format=args.format, text_field=args.text_field,
                                    eval_fraction=0.0 if args.eval_corpus else args.eval_fraction,
                                    seed=(options or PretrainingOptions()).seed)
    model = args.preset or args.config
    if model is None and args.init_from is None:
        if not chosen.model:
            raise ConfigError(f"the {args.recipe} recipe names no model size; give --preset, --config or --init-from")
        if tokenizer is None:
            raise ConfigError("give --tokenizer (a model from scratch has none of its own)")
        model = chosen.model_config(load_tokenizer(tokenizer).vocab_size)
    init = args.init or (chosen.init if args.init_from is None else "bert")  # a checkpoint brings its weights
    result = pretrain(training, tokenizer, corpus=args.corpus, corpus_format=args.format,
                      text_field=args.text_field, eval_corpus=args.eval_corpus, eval_fraction=args.eval_fraction,
                      data_dir=args.data, model=model, init_from=args.init_from, options=options,
                      max_minutes=args.max_minutes, init=init)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, one summary (from rank 0) is enough
        return 0
    print(f"{result.steps} steps in {result.wall_time_s:.0f} s ({result.tokens_per_s:.0f} tokens/s)")
    print(f"held-out: {describe_metrics(result.final_metrics) if result.final_metrics else 'none'}")
    print(f"model and tokenizer: {result.output_dir / 'final'}")
    return 0
