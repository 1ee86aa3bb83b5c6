"""What a pretrained encoder carries before any fine-tuning, beside the same architecture from random init: two
diagnostics for a comparison's splits (the comparison itself is `minibert compare`, which writes the splits).

    minibert compare runs/demo/pretrain/final --task classification --train reviews.csv -o runs/compare ...
    python scripts/encoder_diagnostics.py runs/demo/pretrain/final --splits runs/compare/splits --linear-probe
    python scripts/encoder_diagnostics.py runs/demo/pretrain/final --splits runs/compare/splits --cls-attention

--linear-probe: a logistic regression on the frozen encoder's sentence vectors, mean-pooled and [CLS], fitted on
the train split and scored on the test split: what the features know of the labels before fine-tuning, with and
without the [CLS] position that BERT's classification head reads. Random init is drawn from each --seeds.
--cls-attention: per layer, the share of the [CLS] position's attention (mean over heads and test sentences) that
falls on the first 4 positions: where the [CLS] head's only input looks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's minibert, installed or not
from minibert.comparison.arms import write_random_init  # noqa: E402
from minibert.finetuning.readers import build_label_map, read_examples  # noqa: E402
from minibert.inference import embed  # noqa: E402
from minibert.model import BertModel  # noqa: E402
from minibert.tokenizer import BertTokenizer  # noqa: E402


def read_split(splits: Path, name: str) -> list:
    return read_examples(splits / f"{name}.jsonl", "text", label_column="label")


def linear_probe(checkpoint: Path, train: list, test: list, pooling: str, max_length: int) -> float:
    """Test accuracy of an L2-regularised logistic regression (LBFGS) on standardised frozen sentence vectors."""
    model, tokenizer = BertModel.from_pretrained(checkpoint), BertTokenizer.from_pretrained(checkpoint)
    label_ids = build_label_map(example.label for example in train)

    def features(part: list) -> tuple[torch.Tensor, torch.Tensor]:
        x = embed(model, [e.text for e in part], tokenizer=tokenizer, pooling=pooling, max_length=max_length)
        return x, torch.tensor([label_ids[e.label] for e in part])

    (x, y), (x_test, y_test) = features(train), features(test)
    mean, std = x.mean(0), x.std(0) + 1e-6  # standardised, so one weight decay suits both encoders
    x, x_test = (x - mean) / std, (x_test - mean) / std
    classifier = torch.nn.Linear(x.shape[1], len(label_ids))
    optimizer = torch.optim.LBFGS(classifier.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(classifier(x), y) + 1e-3 * classifier.weight.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        return (classifier(x_test).argmax(-1) == y_test).float().mean().item()


def cls_attention(checkpoint: Path, test: list, max_length: int, sentences: int = 64) -> list[float]:
    """Per layer, the share of [CLS]'s attention on the first 4 positions."""
    model = BertModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
    batch = BertTokenizer.from_pretrained(checkpoint)([e.text for e in test[:sentences]], max_length=max_length)
    with torch.no_grad():
        attentions = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                           output_attentions=True).attentions  # per layer (B, H, T, T)
    return [layer[:, :, 0, :4].sum(-1).mean().item() for layer in attentions]


def spread(values: list[float]) -> str:
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1%} ± {deviation:.1%} (min {min(values):.1%}, max {max(values):.1%})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pretrained", type=Path, help="a pretrained model folder (config.json, weights, tokenizer)")
    parser.add_argument("--splits", type=Path, required=True, help="the splits/ folder `minibert compare` wrote "
                                                                   "(train.jsonl, test.jsonl)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="random-init draws")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--linear-probe", action="store_true")
    parser.add_argument("--cls-attention", action="store_true")
    cli = parser.parse_args(argv)
    if not (cli.linear_probe or cli.cls_attention):
        parser.error("give --linear-probe, --cls-attention or both")
    train, test = read_split(cli.splits, "train"), read_split(cli.splits, "test")
    with tempfile.TemporaryDirectory() as scratch:
        random_init = {seed: write_random_init(cli.pretrained, Path(scratch) / f"seed{seed}", seed)
                       for seed in cli.seeds}
        if cli.cls_attention:
            for name, checkpoint in (("pretrained", cli.pretrained), ("random init", random_init[cli.seeds[0]])):
                shares = ", ".join(f"{share:.0%}" for share in cls_attention(checkpoint, test, cli.max_length))
                print(f"[CLS] attention on the first 4 positions, by layer: {name} {shares}")
        if cli.linear_probe:
            for pooling in ("mean", "cls"):
                pretrained = linear_probe(cli.pretrained, train, test, pooling, cli.max_length)
                scratch_scores = [linear_probe(folder, train, test, pooling, cli.max_length)
                                  for folder in random_init.values()]
                print(f"linear probe, {pooling} pooling: pretrained {pretrained:.1%}, random init "
                      f"{spread(scratch_scores)}", flush=True)


if __name__ == "__main__":
    main()
