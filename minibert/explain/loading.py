"""Load any checkpoint for explain: the model class that uses every head it carries, its tokenizer and labels."""

from __future__ import annotations

import os
from dataclasses import dataclass

from minibert import model as M
from minibert.checkpoint import find_weights, read_weights
from minibert.config import BertConfig
from minibert.plumbing.hub import resolve
from minibert.parity import head_class_for
from minibert.finetuning.kinds import read_label_map
from minibert.tokenizer import BertTokenizer


@dataclass
class LoadedModel:
    source: str
    model: M.BertPreTrainedModel
    tokenizer: BertTokenizer
    labels: list[str] | None  # class or tag names in id order, for classification heads
    untrained: list[str]  # parameters the checkpoint did not hold (their part of the model is not shown)


def load_for_explain(name_or_path: str | os.PathLike) -> LoadedModel:
    """Load a checkpoint into the class that uses every head it carries (the choice `minibert parity` makes)."""
    folder = resolve(name_or_path)
    names = list(read_weights(find_weights(folder)))
    config = BertConfig.from_json(folder / "config.json")
    class_name = head_class_for(names, config.extra.get("architectures"))
    model = getattr(M, class_name).from_pretrained(folder).eval()
    labels = None
    if hasattr(model, "classifier"):
        labels = (read_label_map(folder) or {}).get("labels") or list(model.config.labels().values())
    return LoadedModel(str(name_or_path), model, BertTokenizer.from_pretrained(folder), labels,
                       list(model.load_report.newly_initialised))
