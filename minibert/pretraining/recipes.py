"""Named pretraining recipes: a model size, data options and optimisation settings that belong together.

`minibert pretrain --recipe NAME` starts from a recipe and any flag given on the command line overrides it.

- "bert" (the default): the original BERT 2018 settings, as `create_pretraining_data.py` and `run_pretraining.py`
  have them (128-token MLM + NSP examples, 15% static masking, dupe factor 10; AdamW, lr 1e-4, decay 0.01). It
  names no model size: give one with --preset or --config.
- "cpu": a small BERT whose pretraining pays off downstream within 15 minutes on a 2-core CPU: pretrained on
  your own unlabelled text (25,000 movie reviews in the measurement), it fine-tunes better than the same model
  from random initialisation (docs/pretraining-recipe.md has the comparison and every lever tried). The
  "distributional" initialisation (word embeddings from the corpus's co-occurrences, then local attention), a
  16,384-piece vocabulary learnt from the corpus, 128-token MLM-only examples with fresh masks every epoch, a
  high peak learning rate on a triangular schedule, no dropout. Fine-tune what it makes with mean pooling and the
  top layer re-initialised (the README names the flags).
- "cpu-cloze": the recipe that buys the most held-out [MASK]-position accuracy per CPU-minute on the Wikipedia
  leads (the earlier "cpu" recipe; docs/pretraining-recipe.md, sections 3-5): the same model on 64-token
  examples in batches of 16, local-attention initialisation, an 8,192-piece vocabulary. It learns the cloze but
  does not pay off downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from minibert.config import BertConfig
from minibert.pretraining.examples import PretrainingOptions
from minibert.errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    summary: str
    model: dict[str, Any] = field(default_factory=dict)  # BertConfig fields; empty: no model size of its own
    data: dict[str, Any] = field(default_factory=dict)  # PretrainingOptions fields
    training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments fields
    vocab_size: int | None = None  # the WordPiece size it was measured with, learnt when no tokenizer is given
    init: str = "bert"  # how a model from scratch starts (minibert.pretraining.initialisation)
    objective: str = "mlm"  # what it trains: "mlm" (masked LM, + NSP when the data has it) or "electra"

    def model_config(self, vocab_size: int) -> BertConfig:
        """The model to train from scratch, sized to the tokenizer's vocabulary (recipes with a model only)."""
        return BertConfig(vocab_size=vocab_size, **self.model)

    def options(self, **given: Any) -> PretrainingOptions:
        """The recipe's data options, with `given` (explicit choices) on top."""
        return PretrainingOptions(**{**self.data, **given})


# The model both CPU recipes train: 2 layers, hidden 128, 2 heads, feed-forward 512, no dropout.
SMALL_MODEL = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

RECIPES: dict[str, Recipe] = {
    "bert": Recipe("the original BERT settings (give a model size with --preset or --config)"),
    "cpu": Recipe(
        "a small BERT whose pretraining pays off downstream within minutes on a laptop CPU (docs/pretraining-recipe.md)",
        model=SMALL_MODEL,
        data=dict(max_seq_length=128, nsp=False, dynamic_masking=True, dupe_factor=1),
        # 4,000 steps of 32 examples: pretraining (vocabulary, data, word vectors and training) within 15 minutes
        # on 2 cores of the CPU the docs name.
        training=dict(per_device_batch_size=32, learning_rate=1e-3, warmup_ratio=0.5, weight_decay=0.01,
                      max_steps=4000),
        vocab_size=16384, init="distributional"),
    "cpu-cloze": Recipe(
        "a small BERT that learns the cloze within minutes on a laptop CPU (the earlier cpu recipe)",
        model=SMALL_MODEL,
        data=dict(max_seq_length=64, nsp=False, dynamic_masking=True, dupe_factor=1),
        # warmup_ratio 0.5: a triangular (one-cycle) schedule, linear up for half the run and down to 0; measured
        # 18.8% and 18.7% [MASK] accuracy (2 seeds) against 16.7-17.4% (3 seeds) with a 5% warm-up.
        training=dict(per_device_batch_size=16, learning_rate=1e-3, warmup_ratio=0.5, weight_decay=0.01,
                      max_steps=4000),
        vocab_size=8192, init="local-attention"),
}
DEFAULT_RECIPE = "bert"


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    return RECIPES[name]
