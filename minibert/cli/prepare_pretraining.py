"""minibert prepare-pretraining CORPUS... --tokenizer T --output DIR: MLM/NSP examples on disk, ready for
`minibert pretrain --data DIR` (for large corpora, or to prepare once before a torchrun launch).

Also home of the corpus and data-option flags that `minibert pretrain` shares."""

import argparse
import dataclasses
from pathlib import Path

from minibert.cli.arg_types import fraction, non_negative_int, positive_int, probability
from minibert.pretraining.corpus import FORMATS
from minibert.pretraining.examples import PretrainingOptions

# Flags for PretrainingOptions fields; each defaults to None, which keeps the dataclass default (the original
# script's), so `pretrain --data` can tell a flag given from one left alone.
DATA_OPTIONS = {
    "max_seq_length": (positive_int, "tokens per example, [CLS] and [SEP] included (default 128)"),
    "short_seq_prob": (probability, "share of examples with a shorter random target length (default 0.1)"),
    "masked_lm_prob": (probability, "share of tokens to predict (default 0.15)"),
    "max_predictions_per_seq": (positive_int, "most masked tokens per example (default 20)"),
    "dupe_factor": (positive_int, "passes over the corpus, each with new pairs and masks (default 10)"),
}


def add_corpus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="auto", help="corpus format (default: by extension)")
    p.add_argument("--text-field", default="text", help="the text field of jsonl records (default: text)")
    p.add_argument("--eval-corpus", nargs="+", metavar="PATH", help="held-out text (default: --eval-fraction "
                   "of the corpus's documents)")
    p.add_argument("--eval-fraction", type=fraction, default=0.01,
                   help="share of documents held out for evaluation, chosen by a seeded hash (default 0.01; 0: none)")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    for name, (kind, help_text) in DATA_OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, help=help_text)
    p.add_argument("--whole-word-mask", action="store_true", default=None,
                   help="mask every piece of a word together (default: each piece on its own)")
    p.add_argument("--dynamic-masking", action="store_true", default=None,
                   help="store unmasked ids and draw masks at read time (RoBERTa)")
    p.add_argument("--no-nsp", dest="nsp", action="store_false", default=None,
                   help="MLM-only examples without next-sentence prediction")
    p.add_argument("--data-seed", dest="data_seed", type=non_negative_int,
                   help="seed of pairs, masks and the held-out split (default 12345, the original's)")


def given_data_options(args: argparse.Namespace) -> dict:
    """The PretrainingOptions fields the flags set (those given on the command line only)."""
    names = [*DATA_OPTIONS, "whole_word_mask", "dynamic_masking", "nsp"]
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.data_seed is not None:
        given["seed"] = args.data_seed
    return given


def data_options(args: argparse.Namespace) -> PretrainingOptions | None:
    """The PretrainingOptions the flags ask for, or None when no data flag was given."""
    given = given_data_options(args)
    return PretrainingOptions(**given) if given else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", nargs="+", help="text files or folders (see --format)")
    p.add_argument("--tokenizer", required=True, help="tokenizer folder, vocab.txt or hub id")
    p.add_argument("--output", "-o", required=True, help="folder for train/ and eval/")
    add_corpus_arguments(p)
    add_data_arguments(p)


def run(args: argparse.Namespace) -> int:
    from minibert.plumbing.atomic_files import check_output_folder
    from minibert.pretraining.shards import read_meta
    from minibert.pretraining.run import load_tokenizer, prepare_data
    check_output_folder(Path(args.output), "--output")
    options = data_options(args) or PretrainingOptions()
    prepared = prepare_data(args.corpus, load_tokenizer(args.tokenizer), args.output, options,
                            corpus_format=args.format, text_field=args.text_field, eval_corpus=args.eval_corpus,
                            eval_fraction=args.eval_fraction)
    for name, folder in dataclasses.asdict(prepared).items():
        if folder is not None:
            counts = read_meta(folder)["counts"]
            print(f"{name}: {counts['examples']} examples, {counts['tokens']} tokens from {counts['documents']} "
                  f"documents in {folder}")
    return 0
