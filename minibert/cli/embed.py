"""minibert embed: sentence embeddings for texts from a file (one per line) or stdin."""

import argparse
from pathlib import Path

from minibert.cli.arg_types import encoding, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder or hub id")
    p.add_argument("--input", "-i", help="text file, one text per line (default: stdin)")
    p.add_argument("--output", "-o", required=True, help="output file: .npy (matrix) or .jsonl (text + vector)")
    p.add_argument("--pooling", choices=["mean", "cls", "pooler"], default="mean",
                   help="mean of the real tokens' vectors, the [CLS] vector, or BERT's tanh pooler on it")
    p.add_argument("--normalize", action="store_true", help="scale each vector to unit length")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass")
    p.add_argument("--max-length", type=positive_int,
                   help="tokens per text, longer ones are cut (default: the most the model reads, e.g. 512)")
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
    if args.pooling == "pooler":  # the encoder itself is always complete (the loader checks)
        model.load_report.check_trained("embed --pooling pooler", ("pooler.",))
    tokenizer = BertTokenizer.from_pretrained(args.model)
    texts = (line for _, line in text_lines(args.input, args.encoding) if line.strip())
    with atomic_path(output) as tmp, open(tmp, "wb") as file:  # in place only once every text is in it
        writer = EmbeddingWriter(file, npy=output.suffix == ".npy")
        for chunk in chunks(texts, args.batch_size):
            writer.add(chunk, embed(model, tokenizer, chunk, args.pooling, args.normalize, args.batch_size,
                                    args.max_length).numpy())
        if writer.count == 0:
            raise InputError(f"{args.input or 'stdin'}: no texts to embed")
        writer.finish()
    print(f"wrote {writer.count} embeddings of size {model.config.hidden_size} to {output}")
    return 0
