"""minibert explain MODEL "text" [--pair "second text"]: follow one input through the model, stage by stage, each
stage naming the function that computes it; --html writes the attention explorer, --png attention heat maps."""

import argparse

from minibert.cli.arg_types import positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder or hub id (any head: none, MLM/NSP, classifier, tagger, QA)")
    p.add_argument("text", help='e.g. "the capital of france is [MASK]."')
    p.add_argument("--pair", help="a second text: [CLS] text [SEP] pair [SEP] (default: none, one text)")
    p.add_argument("--top-k", type=positive_int, default=5, help="masked-LM predictions shown at each [MASK]")
    p.add_argument("--top-attended", type=positive_int, default=3, help="tokens listed per token and layer")
    p.add_argument("--mask-head", action="append", default=[], metavar="LAYER:HEAD",
                   help="silence one attention head (both counted from 1, as printed); repeat for more")
    p.add_argument("--html", metavar="FILE",
                   help="also write the attention explorer: one self-contained HTML file (default: none)")
    p.add_argument("--png", metavar="DIR",
                   help="also write attention heat maps, one PNG per layer, matplotlib (default: none)")


def run(args: argparse.Namespace) -> int:
    from minibert.explain.explorer import write_explorer
    from minibert.explain.heatmaps import require_matplotlib, save_heatmaps
    from minibert.explain.journey import explain
    from minibert.explain.loading import load_for_explain
    from minibert.explain.report import render_text
    from minibert.plumbing.atomic_files import check_output_file, check_output_folder
    heads = [parse_head(spec) for spec in args.mask_head]
    # Every output is checked before the model loads, so a bad path costs nothing.
    if args.html:
        check_output_file(args.html, "--html")
    if args.png:
        require_matplotlib()
        check_output_folder(args.png, "--png")
    journey = explain(load_for_explain(args.model), args.text, args.pair, top_k=args.top_k,
                      top_attended_n=args.top_attended, mask_heads=heads)
    print(render_text(journey, top_n=args.top_attended), end="")
    if args.html:
        print(f"attention explorer: {write_explorer(journey, args.html)}")
    if args.png:
        paths = save_heatmaps(journey, args.png)
        print(f"attention heat maps: {len(paths)} files in {args.png}")
    return 0


def parse_head(spec: str) -> tuple[int, int]:
    """'3:5', layer 3 and head 5 counted from 1 as explain prints them -> (2, 4), the indices from 0."""
    from minibert.errors import InputError
    try:
        layer, head = (int(part) for part in spec.split(":"))
    except ValueError:
        raise InputError(f"--mask-head {spec!r}: expected LAYER:HEAD, e.g. 3:5 (both counted from 1)") from None
    if layer < 1 or head < 1:
        raise InputError(f"--mask-head {spec!r}: layers and heads count from 1")
    return layer - 1, head - 1
