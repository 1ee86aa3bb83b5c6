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
    from minibert.errors import CheckpointError
    from minibert.inference import fill_mask
    from minibert.model import BertForMaskedLM
    from minibert.tokenizer import BertTokenizer
    model = BertForMaskedLM.from_pretrained(args.model)
    if model.load_report.newly_initialised:
        raise CheckpointError(f"{args.model}: has no masked-LM head (cls.predictions.*); fill-mask needs one")
    predictions = fill_mask(model, BertTokenizer.from_pretrained(args.model), args.text, args.top_k)
    if args.json:
        print(json.dumps([[{"token": t, "probability": p} for t, p in mask] for mask in predictions]))
        return 0
    for i, mask in enumerate(predictions, 1):
        print(f"[MASK] {i}: " + "  ".join(f"{t} ({p:.3f})" for t, p in mask))
    return 0
