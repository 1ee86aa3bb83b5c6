"""minibert pretrain (--corpus PATH... | --data DIR) --tokenizer T (--preset NAME | --config FILE | --init-from CKPT)
--output-dir DIR: pretrain BERT with masked LM (+ NSP) and write DIR/final, a checkpoint transformers loads.

Data-parallel on several processes: `torchrun --nproc_per_node N -m minibert pretrain ...` (rank 0 prepares the
data while the others wait). `minibert -v pretrain ...` also logs data preparation and the time budget."""

import argparse

from minibert.cli.arg_types import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from minibert.cli.prepare_pretraining import add_corpus_arguments, add_data_arguments, data_options
from minibert.config import PRESETS
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
    p.add_argument("--tokenizer", help="tokenizer folder, vocab.txt or hub id (default: the --init-from checkpoint's)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--preset", choices=sorted(PRESETS), help="a model size, trained from scratch")
    model.add_argument("--config", metavar="FILE", help="a config.json, trained from scratch")
    model.add_argument("--init-from", metavar="CKPT", help="continue pretraining a checkpoint (folder or hub id)")
    p.add_argument("--output-dir", "-o", required=True, help="run folder: data/, checkpoints/, metrics, final/")

    run = p.add_argument_group("training")
    length = run.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=positive_int,
                        help="optimizer steps (default: --epochs passes over the data)")
    length.add_argument("--epochs", type=positive_int, default=1, help="passes over the data")
    run.add_argument("--max-minutes", type=positive_float,
                     help="set --max-steps from a timing so that training and evaluation take about this long "
                          "(default: no time budget)")
    run.add_argument("--batch-size", type=positive_int, default=32, help="examples per device per micro-batch")
    run.add_argument("--grad-accum", "--grad-accumulation", type=positive_int, default=1,
                     help="micro-batches per optimizer step")
    run.add_argument("--lr", type=positive_float, default=1e-4, help="peak learning rate (AdamW)")
    warmup = run.add_mutually_exclusive_group()
    warmup.add_argument("--warmup-steps", type=non_negative_int, default=0, help="steps of linear warm-up")
    warmup.add_argument("--warmup-ratio", type=fraction, default=0.0, help="warm-up as a share of all steps")
    run.add_argument("--weight-decay", type=non_negative_float, default=0.01, help="AdamW weight decay")
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


def run(args: argparse.Namespace) -> int:
    from minibert.pretraining.run import pretrain
    from minibert.training.args import TrainingArguments
    training = TrainingArguments(
        args.output_dir, max_steps=args.max_steps, num_epochs=args.epochs, per_device_batch_size=args.batch_size,
        grad_accumulation_steps=args.grad_accum, learning_rate=args.lr, warmup_steps=args.warmup_steps,
        warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, precision=args.precision,
        device=args.device, eval_every=args.eval_every, save_every=args.save_every, log_every=args.log_every,
        seed=args.seed, resume=args.resume, overwrite_output_dir=args.overwrite_output_dir,
        num_workers=args.num_workers, progress_bar=not args.no_progress)
    result = pretrain(training, args.tokenizer, corpus=args.corpus, corpus_format=args.format,
                      text_field=args.text_field, eval_corpus=args.eval_corpus, eval_fraction=args.eval_fraction,
                      data_dir=args.data, model=args.preset or args.config, init_from=args.init_from,
                      options=data_options(args), max_minutes=args.max_minutes)
    from minibert.training.processes import launched_rank
    if launched_rank() != 0:  # under torchrun, one summary (from rank 0) is enough
        return 0
    metrics = "  ".join(f"{name} {value:.4g}" for name, value in result.final_metrics.items())
    print(f"{result.steps} steps in {result.wall_time_s:.0f} s ({result.tokens_per_s:.0f} tokens/s); "
          f"held-out: {metrics or 'none'}")
    print(f"model and tokenizer: {result.output_dir / 'final'}")
    return 0
