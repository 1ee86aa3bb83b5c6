"""`minibert` command line: a thin layer over the library. Each subcommand lives in its own module with
`add_arguments(parser)` and `run(args) -> int`. Bad input prints one line and exits with status 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> (module under minibert.cli, one-line help)
COMMANDS = {
    "parity": ("parity", "compare minibert with transformers layer by layer on a checkpoint"),
    "embed": ("embed", "sentence embeddings (mean, CLS or pooler) to .npy or JSONL"),
    "fill-mask": ("fill_mask", "top-k predictions for each [MASK] in a text"),
    "finetune": ("finetune", "fine-tune a checkpoint for classification, regression, NER or QA"),
    "predict": ("predict", "labels, tags or answers from a fine-tuned model, as JSON lines"),
    "train-tokenizer": ("train_tokenizer", "learn a WordPiece vocabulary from a corpus"),
    "prepare-pretraining": ("prepare_pretraining", "turn a corpus into masked-LM/NSP examples on disk"),
    "pretrain": ("pretrain", "pretrain BERT from raw text (masked LM + next-sentence prediction)"),
    "export": ("export", "write a checkpoint as an ONNX graph for ONNX Runtime, checked against minibert"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minibert", description="BERT from scratch in plain PyTorch.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log loading details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"minibert.cli.{module_name}")
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from minibert.errors import MinibertError
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.run(args)
    except MinibertError as e:
        print(f"minibert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"minibert {args.command}: error: {e.filename}: no such file or folder", file=sys.stderr)
        return 2
    except PermissionError as e:
        print(f"minibert {args.command}: error: {e.filename}: permission denied", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minibert {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
