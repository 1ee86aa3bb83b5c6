"""minibert compare PRETRAINED --task KIND --train FILE --output-dir DIR: did pretraining help? Fine-tunes the
pretrained model, the same architecture from random initialisation and any --reference checkpoints alike, over
paired seeds and a learning-rate grid (each arm's rate chosen on validation), and prints each arm's test score, the
paired margins with their 95% interval, and the TF-IDF + logistic regression baseline on the same split. A thin
layer over minibert.comparison.compare."""

import argparse

from minibert.cli.arg_types import fraction, non_negative_int, positive_float, positive_int
from minibert.cli.finetune import add_length_arguments, add_model_setup_arguments, add_table_arguments, data_spec
from minibert.cli.training_flags import add_training_arguments, given_training_arguments
from minibert.finetuning.kinds import TASK_KINDS

# flag dest -> library name, for error messages (minibert.errors.spelled).
FIELDS = {"train": "train_data", "test": "test_data", "reference": "references"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="PRETRAINED", help="the pretrained model: a folder (e.g. minibert pretrain's "
                                                       "final/) or hub id")
    p.add_argument("--task", required=True, choices=list(TASK_KINDS))
    p.add_argument("--output-dir", "-o", required=True,
                   help="splits/, random-init/, runs/, results.json, comparison.png; finished runs there are reused")
    data = p.add_argument_group("data (the splits used are written to OUTPUT_DIR/splits/)")
    data.add_argument("--train", required=True, help="CSV/TSV/JSONL table, CoNLL file (ner), SQuAD JSON (qa), or "
                                                     "hub:NAME[:CONFIG][@SPLIT]")
    data.add_argument("--test", help="test file (default: hold out --test-fraction of --train)")
    data.add_argument("--test-fraction", type=fraction, default=0.1,
                      help="share of --train held out for the test, as `minibert finetune --validation-fraction` "
                           "holds it out with the same --split-seed")
    data.add_argument("--split-seed", type=non_negative_int, default=0, help="seed of the test, sample and "
                                                                             "validation splits")
    data.add_argument("--labelled", type=positive_int, metavar="N",
                      help="keep a seeded sample of N labelled training examples, validation included (default: "
                           "all)")
    data.add_argument("--validation-fraction", type=fraction, default=0.1,
                      help="share of the training examples held out to choose each arm's learning rate")
    add_table_arguments(data)
    add_length_arguments(data)
    arms = p.add_argument_group("what is compared")
    arms.add_argument("--reference", action="append", default=[], metavar="[NAME=]CHECKPOINT",
                      help="also fine-tune this checkpoint, e.g. all-MiniLM-L6-v2 (repeatable; default: none)")
    arms.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2],
                      help="seeds of the new head, the random encoder and the data order; shared by every arm")
    arms.add_argument("--learning-rates", type=positive_float, nargs="+", default=[1e-4, 3e-4, 1e-3],
                      help="grid searched for each arm on validation")
    arms.add_argument("--baseline", choices=["tfidf", "none"], default="tfidf",
                      help="tfidf: TF-IDF + logistic regression on the same splits (classification; needs "
                           "scikit-learn)")
    add_model_setup_arguments(arms)
    arms.add_argument("--jobs", type=positive_int, default=1,
                      help="fine-tunings at once, one thread each (2 on 2 cores: about twice as fast for small "
                           "models)")
    arms.add_argument("--rerun-changed", action="store_true",
                      help="run again the finished runs in OUTPUT_DIR whose settings differ (default: refuse)")
    add_training_arguments(p, "training, the same for every run (defaults: TrainingArguments')",
                           leave_out=("learning_rate", "seed", "resume", "overwrite_output_dir",
                                      "early_stopping_patience"),
                           defaults={"eval_every": "default 0: once, at the end"})
    # --no-progress (from the training flags): a line per run only; by default one job shows each run's bar


def run(args: argparse.Namespace) -> int:
    from minibert.comparison.compare import compare
    from minibert.comparison.report import table
    training = {**given_training_arguments(args), "progress_bar": None if args.no_progress else True}
    comparison = compare(args.model, args.task, args.train, args.output_dir, references=args.reference,
                         test_data=args.test, test_fraction=args.test_fraction, split_seed=args.split_seed,
                         labelled=args.labelled, validation_fraction=args.validation_fraction, data=data_spec(args),
                         seeds=args.seeds, learning_rates=args.learning_rates, baseline=args.baseline,
                         pooling=args.pooling, reinit_layers=args.reinit_layers, jobs=args.jobs,
                         max_length=args.max_length, doc_stride=args.doc_stride, rerun_changed=args.rerun_changed,
                         echo=lambda line: print(line, flush=True), **training)
    print()
    print(table(comparison))
    if comparison.summary["baseline"] is None and args.baseline == "tfidf":
        print(f"no TF-IDF baseline: it is for classification, not {args.task}")
    print(f"results: {comparison.output_dir / 'results.json'}"
          + (f", plot: {comparison.plot}" if comparison.plot else ""))
    return 0
