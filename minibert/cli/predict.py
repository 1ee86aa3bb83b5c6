"""minibert predict MODEL_DIR [--input FILE] [--output FILE]: predictions of a fine-tuned model, one JSON object
per input line. Input lines are JSON objects ({"text"}, {"text", "pair"}, {"tokens"}, {"question", "context"}) or
plain text, which stands for {"text": line}."""

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="fine-tuned folder (e.g. OUTPUT_DIR/best) or hub id")
    p.add_argument("--input", "-i", help="input file, one record per line (default: stdin)")
    p.add_argument("--output", "-o", help="output JSONL file (default: stdout)")
    p.add_argument("--task", choices=["auto", "classification", "regression", "ner", "qa"], default="auto",
                   help="default: from the folder's label_map.json or config.json")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--int8", action="store_true",
                   help="int8 matrix products with per-token scales (minibert.quantize; CPU): faster, measured to "
                        "keep the answer (README, Speed)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from minibert.fastpath import prepare_for_inference
    from minibert.io import atomic_write_text
    from minibert.tasks.predict import Predictor, read_records
    predictor = Predictor.load(args.model, None if args.task == "auto" else args.task)
    prepare_for_inference(predictor.model, int8=args.int8)
    if args.input:
        with open(args.input, encoding="utf-8") as source:
            records = read_records(source.readlines(), args.input)
    else:
        records = read_records(sys.stdin.readlines(), "stdin")
    lines = "".join(json.dumps(result, ensure_ascii=False) + "\n"
                    for result in predictor.predict(records, args.batch_size))
    if args.output:
        atomic_write_text(Path(args.output), lines)
        print(f"wrote {len(records)} {predictor.kind.name} predictions to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return 0
