"""minibert finetune MODEL --task KIND --train FILE --output-dir DIR: fine-tune a checkpoint on a task and save a
folder that `minibert predict` and transformers load. A thin layer over minibert.tasks.finetune.finetune."""

import argparse

from minibert.cli.arg_types import encoding, finite_float, fraction, non_negative_float, non_negative_int, \
    positive_float, positive_int

TASKS = ("classification", "regression", "ner", "qa")  # minibert.tasks.kinds.TASK_KINDS; kept literal so --help is fast
# flag -> TrainingArguments field. Flags left out keep TrainingArguments' defaults.
TRAINING_FLAGS = {"epochs": "num_epochs", "max_steps": "max_steps", "batch_size": "per_device_batch_size",
                  "grad_accumulation": "grad_accumulation_steps", "lr": "learning_rate",
                  "warmup_ratio": "warmup_ratio", "weight_decay": "weight_decay", "precision": "precision",
                  "eval_every": "eval_every", "early_stopping": "early_stopping_patience", "seed": "seed",
                  "device": "device", "num_workers": "num_workers", "log_every": "log_every", "resume": "resume",
                  "overwrite_output_dir": "overwrite_output_dir"}
# flag -> library name, for error messages (see minibert.errors.spelled)
FIELDS = {**TRAINING_FLAGS, "train": "train_data", "validation": "validation_data"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder, hub id, or a model pretrained by minibert")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--output-dir", "-o", required=True, help="checkpoints, metrics.jsonl, curves.png, final/, best/")
    data = p.add_argument_group("data")
    data.add_argument("--train", required=True,
                      help="CSV/TSV/JSONL table, GLUE TSV (with --glue), CoNLL file (ner), SQuAD JSON (qa), or "
                           "hub:NAME[:CONFIG][@SPLIT] (needs `datasets`)")
    data.add_argument("--validation", help="validation file (default: hold out --validation-fraction of --train)")
    data.add_argument("--validation-fraction", type=fraction, default=0.1,
                      help="share of --train held out; 0 trains on all and never evaluates")
    data.add_argument("--split-seed", type=non_negative_int, default=0, help="seed of the held-out split")
    data.add_argument("--text-column", default="text", help="column holding the text")
    data.add_argument("--pair-column", help="second text of sentence-pair tasks (default: none, single texts)")
    data.add_argument("--label-column", default="label", help="column holding the label")
    data.add_argument("--format", choices=["csv", "tsv", "jsonl"], help="default: from the file extension")
    data.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                      help="keep only rows with this value (repeatable), e.g. source=rotten_tomatoes "
                           "(default: all rows)")
    data.add_argument("--glue", metavar="TASK", help="read GLUE TSVs of this task (cola, sst2, mrpc, stsb, ...; "
                                                     "default: none, a plain table)")
    data.add_argument("--encoding", type=encoding, default="utf-8",
                      help="text encoding of the data files (e.g. latin-1, cp1252)")
    data.add_argument("--max-length", type=positive_int, default=128, help="tokens per example (QA: per window)")
    data.add_argument("--doc-stride", type=positive_int, help="QA: overlap of a context's windows (default "
                                                              "max-length/4, at most 128)")
    data.add_argument("--tokenizer", help="tokenizer folder or file (default: the model's)")
    qa = p.add_argument_group("question answering: how validation decodes answers (saved for predict)")
    qa.add_argument("--null-score-threshold", type=finite_float, default=0.0,
                    help='answer "" when the no-answer score beats the best span\'s by more than this; used only '
                         'when the data have unanswerable questions (SQuAD 2.0)')
    qa.add_argument("--n-best", type=positive_int, default=20,
                    help="likeliest starts and ends per window searched for the answer span")
    qa.add_argument("--max-answer-length", type=positive_int, default=30, help="longest answer, in tokens")
    run_ = p.add_argument_group("training (defaults: TrainingArguments')")
    run_.add_argument("--epochs", type=positive_int, help="passes over the training set (default 1)")
    run_.add_argument("--max-steps", type=positive_int, help="optimizer steps; overrides --epochs (default: none)")
    run_.add_argument("--batch-size", type=positive_int, help="examples per device per micro-batch (default 32)")
    run_.add_argument("--grad-accumulation", "--grad-accum", type=positive_int,
                      help="micro-batches per optimizer step (default 1)")
    run_.add_argument("--lr", type=positive_float, help="peak learning rate (default 1e-4)")
    run_.add_argument("--warmup-ratio", type=fraction, help="fraction of steps warming up (default 0)")
    run_.add_argument("--weight-decay", type=non_negative_float, help="AdamW weight decay (default 0.01)")
    run_.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"],
                      help="default fp32; auto: bf16 where a probe of the first step shows it faster here")
    run_.add_argument("--eval-every", type=non_negative_int, help="evaluate every N steps (default: once per epoch)")
    run_.add_argument("--early-stopping", type=positive_int, metavar="N",
                      help="stop after N evaluations without improvement (default: never)")
    run_.add_argument("--seed", type=non_negative_int, help="head init, data order, dropout (default 0)")
    run_.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    run_.add_argument("--num-workers", type=non_negative_int, help="DataLoader workers (default 0)")
    run_.add_argument("--log-every", type=positive_int,
                      help="steps between metrics.jsonl lines and --no-progress log lines (default 10)")
    resume = run_.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir "
                        "(an error when there is none); a changed --lr, --max-steps or --epochs is applied and said")
    resume.add_argument("--overwrite-output-dir", action="store_true",
                        help="start a new run in an --output-dir that holds an earlier one (its files are replaced "
                             "as the new run saves its own)")
    run_.add_argument("--no-progress", action="store_true",
                      help="log a line every --log-every steps instead of a progress bar")


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
    from minibert.tasks.finetune import DataSpec, finetune
    from minibert.tasks.qa_decoding import QADecoding
    data = DataSpec(text_column=args.text_column, pair_column=args.pair_column, label_column=args.label_column,
                    format=args.format, where=parse_where(args.where) or None, glue_task=args.glue,
                    encoding=args.encoding)
    training = {field: getattr(args, flag) for flag, field in TRAINING_FLAGS.items() if getattr(args, flag) is not None}
    training.update(progress_bar=not args.no_progress)
    result = finetune(args.model, args.task, args.train, args.output_dir, validation_data=args.validation,
                      validation_fraction=args.validation_fraction, split_seed=args.split_seed, data=data,
                      max_length=args.max_length, doc_stride=args.doc_stride, tokenizer=args.tokenizer,
                      qa_decoding=QADecoding(args.n_best, args.max_answer_length, args.null_score_threshold),
                      **training)
    run_result = result.training
    print(f"fine-tuned for {result.task} on {result.num_train} examples in {run_result.steps} steps "
          f"({run_result.wall_time_s:.0f} s)")
    if result.metrics:
        shown = ", ".join(f"{name} {value:.4f}" for name, value in result.metrics.items())
        print(f"validation ({result.num_validation} examples, best {result.main_metric} at step "
              f"{run_result.best_step}): {shown}")
    print(f"model: {result.model_dir}")
    return 0
