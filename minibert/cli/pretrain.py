"""minibert pretrain (--corpus PATH... | --data DIR) --tokenizer T (--preset NAME | --config FILE | --init-from CKPT)
--output-dir DIR: pretrain BERT with masked LM (+ NSP) and write DIR/final, a checkpoint transformers loads.
`--objective electra` pretrains by replaced-token detection instead: DIR/final is the discriminator, a plain BERT
encoder, and DIR/final/generator the generator, a masked LM.

`--recipe cpu` (see minibert.pretraining.recipes) brings its own model size and learns its own vocabulary, so
`minibert pretrain --corpus wiki.json --recipe cpu -o runs/cpu` is a whole run; flags given override the recipe.

Data-parallel on several processes: `torchrun --nproc_per_node N -m minibert pretrain ...` (rank 0 prepares the
data while the others wait). `minibert -v pretrain ...` also logs data preparation and the time budget."""

import argparse
from pathlib import Path

from minibert.cli.arg_types import positive_float
from minibert.cli.prepare_pretraining import (add_corpus_arguments, add_data_arguments, data_options,
                                              given_data_options)
from minibert.config import PRESETS
from minibert.pretraining.examples import PretrainingOptions
from minibert.errors import ConfigError
from minibert.pretraining.electra import OBJECTIVES
from minibert.pretraining.initialisation import INITS
from minibert.pretraining.recipes import DEFAULT_RECIPE, RECIPES, Recipe
from minibert.cli.training_flags import DEFAULTS, EXCLUSIVE, add_training_arguments, given_training_arguments


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
                   "BERT's initialisation; local-attention: attention starts local; distributional: local-attention with word "
                   "embeddings from the corpus's co-occurrences; see minibert.pretraining.initialisation)")
    p.add_argument("--objective", choices=OBJECTIVES,
                   help="what pretraining learns (default: the recipe's, else mlm); mlm: masked LM, plus next-sentence "
                        "prediction when the data has pairs; electra: replaced-token detection (Clark et al. 2020) on "
                        "MLM-only data, with a generator half as deep sharing the embeddings")
    output = p.add_mutually_exclusive_group(required=True)
    output.add_argument("--output-dir", "-o", help="run folder: data/, checkpoints/, metrics, final/")
    output.add_argument("--output_dir", dest="output_dir", help=argparse.SUPPRESS)  # transformers' spelling

    p.add_argument("--max-minutes", type=positive_float,
                   help="set --max-steps from a timing so that training and evaluation take about this long "
                        "(default: no time budget)")
    recipe_default = "default: the recipe's, else {}"
    add_training_arguments(p, "training (defaults: the recipe's, else TrainingArguments')",
                           leave_out=("early_stopping_patience",),  # pretraining keeps no best checkpoint
                           defaults={"max_steps": "default: the recipe's, else --epochs passes over the data",
                                     **{field: recipe_default.format(DEFAULTS[field]) for field in RECIPE_FIELDS}})


# The training settings a recipe may set (flags given override them).
RECIPE_FIELDS = ("num_epochs", "per_device_batch_size", "learning_rate", "warmup_steps", "warmup_ratio",
                 "weight_decay")


def training_settings(args: argparse.Namespace, recipe: Recipe) -> dict:
    """The recipe's training settings with the flags given on top; a flag drops the recipe's setting of the flag
    it excludes (--epochs its max_steps, --warmup-steps its warmup_ratio)."""
    given = given_training_arguments(args)
    excluded = {other for pair in EXCLUSIVE for field, other in (pair, pair[::-1]) if field in given}
    settings = {k: v for k, v in recipe.training.items() if k not in excluded}
    return {**settings, **given}


def run(args: argparse.Namespace) -> int:
    from minibert.pretraining.recipes import recipe
    from minibert.pretraining.run import learn_tokenizer, load_tokenizer, pretrain
    from minibert.training.args import TrainingArguments
    from minibert.pretraining.objective import describe_metrics
    chosen = recipe(args.recipe)
    training = TrainingArguments(args.output_dir, **training_settings(args, chosen),
                                 progress_bar=not args.no_progress)
    given = given_data_options(args)
    objective = args.objective or chosen.objective
    if objective == "electra" and args.data is None:
        given.setdefault("nsp", False)  # ELECTRA has no next-sentence prediction
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
                      max_minutes=args.max_minutes, init=init, objective=objective)
    from minibert.training.processes import launched_rank
    if launched_rank() != 0:  # under torchrun, one summary (from rank 0) is enough
        return 0
    print(f"{result.steps} steps in {result.wall_time_s:.0f} s ({result.tokens_per_s:.0f} tokens/s)")
    print(f"held-out: {describe_metrics(result.final_metrics) if result.final_metrics else 'none'}")
    print(f"model and tokenizer: {result.output_dir / 'final'}")
    if objective == "electra":
        print(f"generator (a masked LM, for fill-mask): {result.output_dir / 'final' / 'generator'}")
    return 0
