"""minibert parity MODEL: the same checkpoint in minibert and transformers, compared layer by layer."""

import argparse

import torch

from minibert.cli.arg_types import positive_float


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder, weights file or hub id (e.g. bert-base-uncased)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="float64 shows the arithmetic agrees, not only the tolerance (expect ~1e-12)")
    p.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="minibert's attention path")
    p.add_argument("--tolerance", type=positive_float,
                   help="max |diff| allowed (default 1e-4 float32, 1e-10 float64)")
    p.add_argument("--sentences", help="text file, one sentence per line (default: a built-in set)")


def run(args: argparse.Namespace) -> int:
    from minibert.errors import InputError
    from minibert.parity import compare
    from minibert.plumbing.text_files import read_text
    sentences = None
    if args.sentences:
        sentences = [line.strip() for line in read_text(args.sentences).splitlines() if line.strip()]
        if not sentences:
            raise InputError(f"{args.sentences}: no sentences")
    report = compare(args.model, sentences=sentences, dtype=getattr(torch, args.dtype),
                     attn_implementation=args.attn, tolerance=args.tolerance)
    print(report.table())
    return 0 if report.ok else 1
