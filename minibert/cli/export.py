"""minibert export onnx MODEL OUT.onnx: an ONNX graph for ONNX Runtime, checked against minibert before it is
written (see minibert.speed.onnx_export)."""

import argparse

from minibert.cli.arg_types import non_negative_float


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=["onnx"], help="the format to write (onnx)")
    p.add_argument("model", help="checkpoint folder, weights file or hub id")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--fused", metavar="PATH",
                   help="also write ONNX Runtime's BERT-optimized (fused) graph here (default: none)")
    p.add_argument("--class", dest="model_class", metavar="NAME",
                   help="model class to load (default: config.json's architectures, else BertModel)")
    p.add_argument("--tolerance", type=non_negative_float, default=1e-5,
                   help="max |diff| from minibert's outputs at real tokens (default 1e-5)")


def run(args: argparse.Namespace) -> int:
    from minibert.errors import InputError
    from minibert.speed.onnx_export import OUTPUTS, export_onnx
    from minibert.plumbing.hub import resolve
    from minibert.model import MODEL_CLASSES
    if args.model_class is not None and args.model_class not in OUTPUTS:
        raise InputError(f"--class {args.model_class}: expected one of {', '.join(OUTPUTS)}")
    name = args.model_class or _architecture(resolve(args.model))
    model = MODEL_CLASSES[name].from_pretrained(args.model)
    report = export_onnx(model, args.output, fused=args.fused, tolerance=args.tolerance)
    print(report.summary())
    return 0


def _architecture(folder) -> str:
    """The first class config.json's architectures names that minibert exports, else BertModel."""
    import json

    from minibert.speed.onnx_export import OUTPUTS
    try:
        names = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        names = []
    return next((n for n in names if n in OUTPUTS), "BertModel")
