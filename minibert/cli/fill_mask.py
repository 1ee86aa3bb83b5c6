"""minibert fill-mask MODEL "text with [MASK]": top-k tokens with probabilities for each mask."""

import argparse
import json

from minibert.cli.arg_types import positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder or hub id with an MLM head")
    p.add_argument("text", help='e.g. "the capital of france is [MASK]."')
    p.add_argument("--top-k", type=positive_int, default=5, help="predictions shown for each [MASK]")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from minibert.inference import fill_mask
    predictions = fill_mask(args.model, args.text, top_k=args.top_k)
    if args.json:
        print(json.dumps([[{"token": t, "probability": p} for t, p in mask] for mask in predictions]))
        return 0
    for i, mask in enumerate(predictions, 1):
        print(f"[MASK] {i}: " + "  ".join(f"{t} ({p:.3f})" for t, p in mask))
    return 0
