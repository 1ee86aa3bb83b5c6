"""minibert train-tokenizer CORPUS... --vocab-size N --output DIR: learn a WordPiece vocabulary and save it in
the layout transformers' AutoTokenizer and `minibert pretrain --tokenizer DIR` read."""

import argparse
from pathlib import Path

from minibert.cli.arg_types import positive_int
from minibert.pretraining.corpus import FORMATS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", nargs="+", help="text files or folders")
    p.add_argument("--vocab-size", type=positive_int, required=True, help="most tokens, specials included")
    p.add_argument("--output", "-o", required=True, help="folder for tokenizer.json, vocab.txt, tokenizer_config.json")
    p.add_argument("--format", choices=FORMATS, default="auto", help="corpus format (default: by extension)")
    p.add_argument("--text-field", default="text", help="the text field of jsonl records (default: text)")
    p.add_argument("--no-lowercase", dest="lowercase", action="store_false", help="keep case and accents")
    p.add_argument("--min-frequency", type=positive_int, default=2,
                   help="fewer sightings than this: no token of its own")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a folder that already holds a model or tokenizer (its tokenizer files are "
                        "replaced)")


def run(args: argparse.Namespace) -> int:
    from minibert.plumbing.atomic_files import check_output_folder
    from minibert.pretraining.corpus import CorpusStats, iter_documents
    from minibert.pretraining.wordpiece import Reread, train_wordpiece
    from minibert.pretraining.corpus import warnings_if_successful
    from minibert.tokenizer import TOKENIZER_FILES
    check_output_folder(Path(args.output), "--output", inputs=args.corpus, writes=TOKENIZER_FILES,
                        overwrite=("--overwrite", args.overwrite))
    passes: list[CorpusStats] = []  # the corpus is read twice; the last pass's counts are the corpus's

    def documents():
        passes.append(CorpusStats())
        return iter_documents(args.corpus, args.format, text_field=args.text_field, stats=passes[-1])
    with warnings_if_successful():
        tokenizer = train_wordpiece(Reread(documents), args.vocab_size, args.lowercase, args.min_frequency)
    stats = passes[-1]
    tokenizer.save_pretrained(args.output)
    print(f"{tokenizer.vocab_size} tokens learnt from {stats.documents} documents ({stats.sentences} sentences); "
          f"saved to {args.output}")
    return 0
