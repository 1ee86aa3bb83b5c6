"""minibert predict MODEL_DIR [--input FILE] [--output FILE]: predictions of a fine-tuned model, one JSON object
per input line. Input lines are JSON objects ({"text"}, {"text", "pair"}, {"tokens"}, {"question", "context"}) or
plain text, which stands for {"text": line}."""

import argparse
import sys

from minibert.cli.arg_types import encoding, finite_float, positive_int
from minibert.finetuning.kinds import TASK_KINDS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="fine-tuned folder (e.g. OUTPUT_DIR/best) or hub id")
    p.add_argument("--input", "-i", help="input file, one record per line (default: stdin)")
    p.add_argument("--output", "-o", help="output JSONL file (default: stdout)")
    p.add_argument("--task", choices=["auto", *TASK_KINDS], default="auto",
                   help="auto: from the folder's label_map.json or config.json")
    p.add_argument("--batch-size", type=positive_int, default=32, help="records per forward pass")
    p.add_argument("--encoding", type=encoding, default="utf-8", help="text encoding of --input (or stdin)")
    p.add_argument("--int8", action="store_true",
                   help="int8 matrix products with per-token scales (minibert.speed.quantize; CPU): faster, "
                        "measured to keep the answer (README, Speed)")
    qa = p.add_argument_group("question answering (defaults: the settings the model was evaluated with, saved in "
                              "its label_map.json)")
    qa.add_argument("--null-score-threshold", type=finite_float,
                    help='answer "" when the no-answer score ([CLS] start + end logits) beats the best span\'s by '
                         'more than this; higher answers "" less often (default: as saved, 0.0 for a model whose '
                         'data had unanswerable questions, never "" for one whose data had none; 0.0 for a folder '
                         'fine-tuned elsewhere)')
    qa.add_argument("--n-best", type=positive_int,
                    help="likeliest starts and ends per window searched for the answer span (default: as saved, "
                         "else 20)")
    qa.add_argument("--max-answer-length", type=positive_int,
                    help="longest answer, in tokens (default: as saved, else 30)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from minibert.plumbing.atomic_files import check_output_file
    from minibert.speed.fused_layers import prepare_for_inference
    from minibert.plumbing.atomic_files import atomic_write_text
    from minibert.finetuning.predict import Predictor, read_records
    from minibert.plumbing.text_files import read_stdin, read_text
    if args.output:
        check_output_file(Path(args.output), "--output")
    decoding = {name: getattr(args, name) for name in ("null_score_threshold", "n_best", "max_answer_length")
                if getattr(args, name) is not None}
    predictor = Predictor.load(args.model, None if args.task == "auto" else args.task, decoding=decoding)
    prepare_for_inference(predictor.model, int8=args.int8)
    if args.input:
        records = read_records(read_text(args.input, args.encoding).splitlines(), args.input)
    else:
        records = read_records(read_stdin(args.encoding).splitlines(), "stdin")
    lines = "".join(json.dumps(result, ensure_ascii=False) + "\n"
                    for result in predictor.predict(records, args.batch_size))
    if args.output:
        atomic_write_text(Path(args.output), lines)
        print(f"wrote {len(records)} {predictor.kind.name} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return 0
