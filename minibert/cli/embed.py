"""minibert embed: sentence embeddings for texts from a file (one per line) or stdin."""

import argparse
import json
from pathlib import Path

from minibert.cli.arg_types import encoding, positive_int
from minibert.inference import POOLINGS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder or hub id")
    p.add_argument("--input", "-i", help="text file, one text per line (default: stdin)")
    p.add_argument("--output", "-o", required=True, help="output file: .npy (matrix) or .jsonl (text + vector)")
    p.add_argument("--pooling", choices=list(POOLINGS),
                   help="mean of the real tokens' vectors, the [CLS] vector, max, ..., or BERT's tanh pooler on [CLS] "
                        "(default: the folder's sentence-transformers pooling, else mean)")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction,
                   help="scale each vector to unit length (default: as the folder's sentence-transformers modules "
                        "say, else not)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass")
    p.add_argument("--max-length", type=positive_int,
                   help="tokens per text, longer ones are cut (default: the folder's sentence-transformers "
                        "max_seq_length, else the tokenizer's and model's limit)")
    p.add_argument("--prompt", help="text put before every input (default: the folder's default prompt, if any)")
    p.add_argument("--encoding", type=encoding, default="utf-8", help="text encoding of --input (or stdin)")
    p.add_argument("--int8", action="store_true",
                   help="int8 matrix products with per-token scales (minibert.speed.quantize; CPU): faster, "
                        "measured to keep the answer (README, Speed)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from minibert.plumbing.atomic_files import check_output_file
    from minibert.errors import InputError
    from minibert.speed.fused_layers import prepare_for_inference
    from minibert.inference import embed
    from minibert.plumbing.atomic_files import atomic_path, atomic_write_text
    from minibert.model import BertModel
    from minibert.plumbing.text_files import read_stdin, read_text
    output = Path(args.output)
    if output.suffix not in (".npy", ".jsonl"):
        raise InputError(f"--output {output}: use a .npy or .jsonl file name")
    check_output_file(output, "--output")
    text = read_text(args.input, args.encoding) if args.input else read_stdin(args.encoding)
    texts = [line for line in text.splitlines() if line.strip()]
    if not texts:
        raise InputError(f"{args.input or 'stdin'}: no texts to embed")
    model = prepare_for_inference(BertModel.from_pretrained(args.model), int8=args.int8)
    vectors = embed(model, texts, pooling=args.pooling, normalize=args.normalize, max_length=args.max_length,
                    prompt=args.prompt, batch_size=args.batch_size)
    if output.suffix == ".npy":
        with atomic_path(output) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, vectors.numpy())
    else:
        atomic_write_text(output, "".join(json.dumps({"text": t, "embedding": [round(x, 6) for x in v]}) + "\n"
                                          for t, v in zip(texts, vectors.tolist())))
    print(f"wrote {len(texts)} embeddings of size {vectors.shape[1]} to {output}")
    return 0
