"""minibert embed: sentence embeddings for texts from a file (one per line) or stdin."""

import argparse
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
    from minibert.cli.streaming import EmbeddingWriter, chunks
    from minibert.errors import InputError
    from minibert.inference import embed
    from minibert.model import BertModel
    from minibert.plumbing.atomic_files import atomic_path, check_output_file
    from minibert.plumbing.text_files import text_lines
    from minibert.speed.fused_layers import prepare_for_inference
    from minibert.tokenizer import BertTokenizer
    output = Path(args.output)
    if output.suffix not in (".npy", ".jsonl"):
        raise InputError(f"--output {output}: use a .npy or .jsonl file name")
    check_output_file(output, "--output", inputs=(args.input, args.model))
    model = prepare_for_inference(BertModel.from_pretrained(args.model), int8=args.int8)
    tokenizer = BertTokenizer.from_pretrained(args.model)
    texts = (line for _, line in text_lines(args.input, args.encoding) if line.strip())
    with atomic_path(output) as tmp, open(tmp, "wb") as file:  # in place only once every text is in it
        writer = EmbeddingWriter(file, npy=output.suffix == ".npy")
        for chunk in chunks(texts, args.batch_size):
            writer.add(chunk, embed(model, chunk, tokenizer=tokenizer, pooling=args.pooling,
                                    normalize=args.normalize, max_length=args.max_length, prompt=args.prompt,
                                    batch_size=args.batch_size).numpy())
        if writer.count == 0:
            raise InputError(f"{args.input or 'stdin'}: no texts to embed")
        writer.finish()
    print(f"wrote {writer.count} embeddings of size {writer.width} to {output}")
    return 0
