"""evaluate(): a fine-tuned folder's metrics on labelled examples (a test set), computed by the very code that
validates during fine-tuning: the same features (run.evaluation_features), the same training adapter and metric
function, the same evaluation loader. A test score and a validation score therefore mean the same thing.

    evaluate("runs/rt/final", "test.jsonl")   # {"loss": ..., "accuracy": ..., "macro_f1": ..., ...}
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

from minibert.errors import CheckpointError, DataError
from minibert.finetuning.features import collate, default_doc_stride
from minibert.finetuning.kinds import read_label_map, task_kind
from minibert.finetuning.qa_decoding import QADecoding
from minibert.finetuning.run import DataSpec, evaluation_features, read_task_examples, training_adapter
from minibert.plumbing.hub import resolve
from minibert.tokenizer import BertTokenizer
from minibert.training.batches import eval_loader
from minibert.training.precision import autocast
from minibert.training.processes import choose_device


def evaluate(model_dir: str | os.PathLike, examples: str | os.PathLike | Sequence, *, data: DataSpec = DataSpec(),
             batch_size: int = 32, doc_stride: int | None = None, precision: str = "fp32",
             device: str | None = None) -> dict[str, float]:
    """The task's metrics of the model in `model_dir` (a folder `finetune` wrote: its label_map.json names the
    task, labels, max_length and QA decoding) on `examples`: a file read as finetune reads one (`data`), or
    examples already read. `precision` ("fp32" or "bf16") should be the one the model was validated in."""
    folder = resolve(model_dir)
    label_map = read_label_map(folder)
    if label_map is None:
        raise CheckpointError(f"{model_dir}: no label_map.json; evaluate reads a folder that finetune wrote")
    kind = task_kind(label_map["task"])
    if isinstance(examples, (str, os.PathLike)):
        examples = read_task_examples(kind, examples, data, default_split="test")
    if not examples:
        raise DataError("evaluate: no examples")
    model = kind.model_class.from_pretrained(folder).to(choose_device(device))
    model.load_report.check_trained("evaluate")
    tokenizer = BertTokenizer.from_pretrained(folder)
    max_length = label_map["max_length"]
    decoding = QADecoding(**label_map["qa_decoding"]) if label_map.get("qa_decoding") else None
    features, metric_fn = evaluation_features(kind, tokenizer, list(examples), label_map["labels"], max_length,
                                              doc_stride or default_doc_stride(max_length), decoding)
    loader = eval_loader(features, functools.partial(collate, pad_id=tokenizer.pad_id), batch_size, seed=0,
                         num_workers=0, pin_memory=False)
    with autocast(precision, model.device):
        return training_adapter(kind, metric_fn).evaluate(model, loader)
