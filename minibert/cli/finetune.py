"""minibert finetune MODEL --task KIND --train FILE --output-dir DIR: fine-tune a checkpoint on a task and save a
folder that `minibert predict` and transformers load. A thin layer over minibert.finetuning.run.finetune."""

import argparse

from minibert.cli.arg_types import encoding, finite_float, fraction, non_negative_int, positive_int
from minibert.cli.training_flags import add_training_arguments, given_training_arguments
from minibert.finetuning.kinds import TASK_KINDS

# flag -> library name, for error messages (see minibert.errors.spelled); the training flags' dests are their
# TrainingArguments fields already.
FIELDS = {"train": "train_data", "validation": "validation_data"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder, hub id, or a model pretrained by minibert")
    p.add_argument("--task", required=True, choices=list(TASK_KINDS))
    output = p.add_mutually_exclusive_group(required=True)
    output.add_argument("--output-dir", "-o", help="checkpoints, metrics.jsonl, curves.png, final/, best/")
    output.add_argument("--output_dir", dest="output_dir", help=argparse.SUPPRESS)  # transformers' spelling
    add_model_setup_arguments(p)
    data = p.add_argument_group("data")
    data.add_argument("--train", required=True,
                      help="CSV/TSV/JSONL table, GLUE TSV (with --glue), CoNLL file (ner), SQuAD JSON (qa), or "
                           "hub:NAME[:CONFIG][@SPLIT] (needs `datasets`)")
    data.add_argument("--validation", help="validation file (default: hold out --validation-fraction of --train)")
    data.add_argument("--validation-fraction", type=fraction, default=0.1,
                      help="share of --train held out; 0 trains on all and never evaluates")
    data.add_argument("--split-seed", type=non_negative_int, default=0, help="seed of the held-out split")
    add_table_arguments(data)
    data.add_argument("--glue", metavar="TASK", help="read GLUE TSVs of this task (cola, sst2, mrpc, stsb, ...; "
                                                     "default: none, a plain table)")
    add_length_arguments(data)
    data.add_argument("--tokenizer", help="tokenizer folder or file (default: the model's)")
    qa = p.add_argument_group("question answering: how validation decodes answers (saved for predict)")
    qa.add_argument("--null-score-threshold", type=finite_float, default=0.0,
                    help='answer "" when the no-answer score beats the best span\'s by more than this; used only '
                         'when the data have unanswerable questions (SQuAD 2.0)')
    qa.add_argument("--n-best", type=positive_int, default=20,
                    help="likeliest starts and ends per window searched for the answer span")
    qa.add_argument("--max-answer-length", type=positive_int, default=30, help="longest answer, in tokens")
    add_training_arguments(p, "training (defaults: TrainingArguments')",
                           defaults={"eval_every": "default: once per epoch",
                                     "early_stopping_patience": "default: never"})


def add_model_setup_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """What is done to the checkpoint before training (shared with `minibert compare`)."""
    from minibert.config import POOLINGS
    p.add_argument("--pooling", choices=POOLINGS,
                   help="what a new classification or regression head reads: cls, BERT's pooler on [CLS]; mean, the "
                        "mean of the last layer's real tokens, no pooler (transformers' BertForSequenceClassification "
                        "cannot read it: the saved folder's README.md shows the lines that can) (default: the "
                        "checkpoint's, else cls)")
    p.add_argument("--reinit-layers", type=non_negative_int, default=0, metavar="N",
                   help="re-initialise the top N encoder layers with BERT's init before training (Zhang et al. "
                        "2021)")


def add_table_arguments(data: argparse._ArgumentGroup) -> None:
    """How to read a table's rows (shared with `minibert compare`)."""
    data.add_argument("--text-column", default="text", help="column holding the text")
    data.add_argument("--pair-column", help="second text of sentence-pair tasks (default: none, single texts)")
    data.add_argument("--label-column", default="label", help="column holding the label")
    data.add_argument("--format", choices=["csv", "tsv", "jsonl"], help="default: from the file extension")
    data.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                      help="keep only rows with this value (repeatable), e.g. source=rotten_tomatoes "
                           "(default: all rows)")
    data.add_argument("--encoding", type=encoding, default="utf-8",
                      help="text encoding of the data files (e.g. latin-1, cp1252)")


def add_length_arguments(data: argparse._ArgumentGroup) -> None:
    data.add_argument("--max-length", type=positive_int, default=128, help="tokens per example (QA: per window)")
    data.add_argument("--doc-stride", type=positive_int, help="QA: overlap of a context's windows (default "
                                                              "max-length/4, at most 128)")


def data_spec(args: argparse.Namespace):
    from minibert.finetuning.run import DataSpec
    return DataSpec(text_column=args.text_column, pair_column=args.pair_column, label_column=args.label_column,
                    format=args.format, where=parse_where(args.where) or None,
                    glue_task=getattr(args, "glue", None), encoding=args.encoding)


def parse_where(pairs: list[str]) -> dict[str, str]:
    from minibert.errors import InputError
    where = {}
    for pair in pairs:
        column, sep, value = pair.partition("=")
        if not sep or not column:
            raise InputError(f"--where {pair!r}: expected COLUMN=VALUE")
        where[column] = value
    return where


def run(args: argparse.Namespace) -> int:
    from minibert.finetuning.run import finetune
    from minibert.finetuning.qa_decoding import QADecoding
    data = data_spec(args)
    training = {**given_training_arguments(args), "progress_bar": not args.no_progress}
    result = finetune(args.model, args.task, args.train, args.output_dir, validation_data=args.validation,
                      validation_fraction=args.validation_fraction, split_seed=args.split_seed, data=data,
                      max_length=args.max_length, doc_stride=args.doc_stride, tokenizer=args.tokenizer,
                      qa_decoding=QADecoding(args.n_best, args.max_answer_length, args.null_score_threshold),
                      pooling=args.pooling, reinit_layers=args.reinit_layers, **training)
    run_result = result.training
    print(f"fine-tuned for {result.task} on {result.num_train} examples in {run_result.steps} steps "
          f"({run_result.wall_time_s:.0f} s)")
    if result.metrics:
        shown = ", ".join(f"{name} {value:.4f}" for name, value in result.metrics.items())
        print(f"validation ({result.num_validation} examples, best {result.main_metric} at step "
              f"{run_result.best_step}): {shown}")
    print(f"model: {result.model_dir}")
    return 0
