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
from minibert.errors import CheckpointError, MinibertError, shown
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
    head: str  # the head's checkpoint prefix: kinds sharing one would load each other's head

    @property
    def main_metric(self) -> str:
        """What picks the best checkpoint (GLUE tasks name their own, see readers.GLUE_TASKS)."""
        return MAIN_METRICS[self.metric_kind]


# The one list of tasks: `minibert finetune --task` and `minibert predict --task` offer these names.
TASK_KINDS: dict[str, TaskKind] = {
    "classification": TaskKind("classification", BertForSequenceClassification, "classification", "classifier"),
    "regression": TaskKind("regression", BertForSequenceClassification, "regression", "classifier"),
    "ner": TaskKind("ner", BertForTokenClassification, "token_classification", "classifier"),
    "qa": TaskKind("qa", BertForQuestionAnswering, "qa", "qa_outputs"),
}


def task_kind(name: str) -> TaskKind:
    if not isinstance(name, str) or name not in TASK_KINDS:
        raise MinibertError(f"unknown task {shown(name)}; expected one of {', '.join(TASK_KINDS)}")
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
    """label_map.json, its keys checked for type (the task a known one, the labels a list of names, max_length a
    whole number), or None when the folder has none."""
    path = Path(folder) / LABEL_MAP_FILE
    if not path.is_file():
        return None
    try:
        label_map = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({getattr(error, 'msg', error)})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(label_map, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {shown(label_map)}")
    labels, max_length = label_map.get("labels"), label_map.get("max_length")
    if label_map.get("task") not in TASK_KINDS:
        raise CheckpointError(f"{path}: 'task' is {shown(label_map.get('task'))}, not one of {', '.join(TASK_KINDS)}")
    if labels is not None and not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise CheckpointError(f"{path}: 'labels' should list the label names in id order, got {shown(labels)}")
    if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1):
        raise CheckpointError(f"{path}: 'max_length' should be a positive whole number, got {shown(max_length)}")
    return label_map


def saved_task(folder: str | os.PathLike) -> tuple[str, str] | None:
    """(task, where it is said) of a fine-tuned folder: label_map.json's word, else the head class in
    config.json (a sequence head with one output, or problem_type "regression", is a regression model); None for
    a folder without a task head (a pretrained encoder)."""
    folder = Path(folder)
    label_map = read_label_map(folder)
    if label_map is not None:
        return label_map["task"], LABEL_MAP_FILE
    config = BertConfig.from_json(folder / "config.json")
    architectures = config.extra.get("architectures")
    architecture = architectures[0] if isinstance(architectures, list) and architectures else None
    said = f"config.json's architectures {architecture}"
    if architecture == BertForSequenceClassification.__name__:
        regression = config.problem_type == "regression" or config.num_labels == 1
        return ("regression" if regression else "classification"), said
    if architecture == BertForTokenClassification.__name__:
        return "ner", said
    if architecture == BertForQuestionAnswering.__name__:
        return "qa", said
    return None


def kind_of_checkpoint(folder: str | os.PathLike) -> str:
    """The task a fine-tuned folder was trained for (see saved_task), or an error saying to pass one."""
    saved = saved_task(folder)
    if saved is None:
        raise CheckpointError(f"{folder}: cannot tell which task it was fine-tuned for (no {LABEL_MAP_FILE}, and "
                              f"config.json names no task head); pass --task")
    return saved[0]


def check_head_fits(folder: str | os.PathLike, kind: TaskKind, fine_tuning: bool = False) -> None:
    """The one check that a checkpoint's head fits the task asked of it. Predicting with a head fine-tuned for
    another task gives numbers that mean nothing (a classifier's two outputs read as NER tags or a score), so it
    is refused; so is fine-tuning a head of another task that shares the asked head's tensors (a sentiment
    classifier's `classifier` as a tagger's), which would be loaded and silently reused. A checkpoint whose head
    the task does not use (a QA model fine-tuned for classification) gives its encoder and a new head."""
    saved = saved_task(folder)
    if saved is None or saved[0] == kind.name:
        return
    task, said = saved
    if fine_tuning and TASK_KINDS[task].head != kind.head:
        return
    remedy = (f"fine-tune from the checkpoint it was fine-tuned from (without a {task} head)" if fine_tuning else
              f"leave out --task, or give a model fine-tuned for {kind.name}")
    raise CheckpointError(f"{folder}: its head was fine-tuned for {task} ({said}), not {kind.name}; {remedy}")
