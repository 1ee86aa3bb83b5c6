"""The four fine-tuning task kinds, and the label map a fine-tuned model carries.

Each kind puts one head on the encoder (BERT 2018, section 4 and Figure 4): a linear layer on [CLS] for
classification and regression, on every token for tagging (NER), and a start/end scorer for extractive QA. A
fine-tuned folder says which kind it is in `label_map.json`, written beside the weights, so that `predict` needs
no flag; a folder fine-tuned elsewhere says it through config.json's `architectures`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from minibert.config import BertConfig
from minibert.errors import CheckpointError, MinibertError
from minibert.finetuning.metrics import MAIN_METRICS
from minibert.finetuning.qa_decoding import QADecoding
from minibert.plumbing.atomic_files import atomic_write_text
from minibert.model import (BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification,
                            BertPreTrainedModel)

LABEL_MAP_FILE = "label_map.json"


@dataclass(frozen=True)
class TaskKind:
    name: str
    model_class: type[BertPreTrainedModel]
    metric_kind: str  # the task kind minibert.finetuning.metrics.compute_metrics knows it by

    @property
    def main_metric(self) -> str:
        """What picks the best checkpoint (GLUE tasks name their own, see readers.GLUE_TASKS)."""
        return MAIN_METRICS[self.metric_kind]


# The one list of tasks: `minibert finetune --task` and `minibert predict --task` offer these names.
TASK_KINDS: dict[str, TaskKind] = {
    "classification": TaskKind("classification", BertForSequenceClassification, "classification"),
    "regression": TaskKind("regression", BertForSequenceClassification, "regression"),
    "ner": TaskKind("ner", BertForTokenClassification, "token_classification"),
    "qa": TaskKind("qa", BertForQuestionAnswering, "qa"),
}


def task_kind(name: str) -> TaskKind:
    if name not in TASK_KINDS:
        raise MinibertError(f"unknown task '{name}'; expected one of {', '.join(TASK_KINDS)}")
    return TASK_KINDS[name]


def write_label_map(folder: str | os.PathLike, kind: str, labels: list[str] | None, max_length: int,
                    qa_decoding: QADecoding | None = None) -> None:
    """label_map.json: the task kind, the labels in id order (None for regression and QA) and the max_length
    the model was trained with, which prediction reuses; for QA also the answer decoding its evaluation used
    (`qa_decoding`), which `predict` uses by default."""
    record = {"task": kind, "labels": labels,
              "label2id": None if labels is None else {label: i for i, label in enumerate(labels)},
              "max_length": max_length}
    if qa_decoding is not None:
        record["qa_decoding"] = dataclasses.asdict(qa_decoding)
    atomic_write_text(Path(folder) / LABEL_MAP_FILE, json.dumps(record, indent=2) + "\n")


def read_label_map(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / LABEL_MAP_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error.msg})") from None


def kind_of_checkpoint(folder: str | os.PathLike) -> str:
    """The task a fine-tuned folder was trained for: label_map.json's word, else the head class in config.json
    (a sequence head with one output, or problem_type "regression", is a regression model)."""
    folder = Path(folder)
    label_map = read_label_map(folder)
    if label_map is not None:
        return task_kind(label_map["task"]).name
    config = BertConfig.from_json(folder / "config.json")
    architecture = (config.extra.get("architectures") or [None])[0]
    if architecture == BertForSequenceClassification.__name__:
        regression = config.problem_type == "regression" or config.num_labels == 1
        return "regression" if regression else "classification"
    if architecture == BertForTokenClassification.__name__:
        return "ner"
    if architecture == BertForQuestionAnswering.__name__:
        return "qa"
    raise CheckpointError(f"{folder}: cannot tell which task it was fine-tuned for (no {LABEL_MAP_FILE}, and "
                          f"config.json's architectures is {architecture!r}); pass --task")
