"""Predictions from a fine-tuned folder: a label with its probabilities (or a score), word tags with entity spans,
or an answer span with its probability.

    predictor = Predictor.load("runs/rt/best")
    predictor.predict([{"text": "a gorgeous, witty film"}])
    # [{"text": "...", "label": "1", "probabilities": {"0": 0.03, "1": 0.97}}]

Records are plain dicts, one JSON object per line on the command line: {"text", "pair"?} for classification and
regression, {"text"} (split on whitespace) or {"tokens": [...]} for NER, {"question", "context", "id"?} for QA.
Each result is its record with the prediction added. All records are encoded at once and run in batches of
similar length (longest first), so little compute goes to padding; results come back in the records' order.

QA answers come from the decoder fine-tuning's evaluation uses (qa_decoding.py), with the settings saved with the
model: "answer" ("" for no answer), its "start" and "end" characters in the context (0 and 0 for ""), and as
"score" its probability among the n-best answers and the null answer (run_squad.py's nbest probability).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from minibert.errors import CheckpointError, InputError
from minibert.plumbing.hub import resolve
from minibert.inference import length_sorted_batches
from minibert.model import BertPreTrainedModel
from minibert.finetuning.features import (Feature, QAFeature, collate, default_doc_stride, encode_classification,
                                          encode_qa, encode_token_classification, word_predictions)
from minibert.finetuning.kinds import TaskKind, kind_of_checkpoint, read_label_map, task_kind
from minibert.finetuning.metrics import extract_entities
from minibert.finetuning.qa_decoding import QADecoding, decode_answers
from minibert.finetuning.readers import QAExample, TaggedSentence, TextExample
from minibert.tokenizer import BertTokenizer

Record = Mapping[str, Any]


@dataclass
class Predictor:
    kind: TaskKind
    model: BertPreTrainedModel
    tokenizer: BertTokenizer
    labels: list[str] | None  # class or tag names in id order; None for regression and QA
    max_length: int
    decoding: QADecoding = QADecoding()  # how QA answers are chosen

    @classmethod
    def load(cls, model_dir: str | os.PathLike, task: str | None = None, device: str | None = None,
             decoding: QADecoding | Mapping[str, Any] | None = None) -> "Predictor":
        """A fine-tuned folder (or hub id). The task comes from label_map.json or config.json unless given; the
        labels from label_map.json, else config.json's id2label (folders fine-tuned with transformers).

        QA `decoding`: a QADecoding, or changes to the one saved in label_map.json (the one the model's
        evaluation used; QADecoding() for a folder without it), e.g. {"null_score_threshold": -1.0}."""
        folder = resolve(model_dir)
        kind = task_kind(task) if task is not None else task_kind(kind_of_checkpoint(folder))
        model = kind.model_class.from_pretrained(folder)
        untrained = model.load_report.newly_initialised  # heads, or the pooler a classifier reads (never the encoder)
        if untrained:
            raise CheckpointError(f"{model_dir}: has no trained {kind.name} head ({', '.join(untrained)} missing); "
                                  f"fine-tune it first, or pass the --task it was trained for")
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        label_map = read_label_map(folder) or {}
        labels = label_map.get("labels")
        if labels is None and kind.name in ("classification", "ner"):
            labels = list(model.config.labels().values())
        tokenizer = BertTokenizer.from_pretrained(folder)
        max_length = label_map.get("max_length") or min(model.config.max_position_embeddings,
                                                        tokenizer.model_max_length)
        return cls(kind, model, tokenizer, labels, max_length, _qa_decoding(label_map, folder, decoding))

    def predict(self, records: Sequence[Record], batch_size: int = 32) -> list[dict[str, Any]]:
        if not records:
            raise InputError("no records to predict")
        if self.kind.name == "qa":
            return self._answer(records, batch_size)
        if self.kind.name == "ner":
            return self._tag(records, batch_size)
        return self._classify(records, batch_size)

    # -- one method per kind: encode, run, format ---------------------------------------------------------------
    def _classify(self, records: Sequence[Record], batch_size: int) -> list[dict[str, Any]]:
        examples = [TextExample(_text(record, "text", i), _optional_text(record, "pair", i))
                    for i, record in enumerate(records)]
        features = encode_classification(self.tokenizer, examples, self.max_length)
        logits = self._run(features, batch_size, lambda output, lengths: list(output.logits.float()))
        if self.kind.name == "regression":
            return [{**record, "score": float(row[0])} for record, row in zip(records, logits)]
        results = []
        for record, row in zip(records, logits):
            probabilities = row.softmax(-1).tolist()
            results.append({**record, "label": self.labels[int(row.argmax())],
                            "probabilities": dict(zip(self.labels, probabilities))})
        return results

    def _tag(self, records: Sequence[Record], batch_size: int) -> list[dict[str, Any]]:
        sentences = [TaggedSentence(_words(record, i), None) for i, record in enumerate(records)]
        features = encode_token_classification(self.tokenizer, sentences, {}, self.max_length)
        predicted = self._run(features, batch_size,
                              lambda output, lengths: [row[:n] for row, n in zip(output.logits.argmax(-1), lengths)])
        results = []
        for record, sentence, feature, ids in zip(records, sentences, features, predicted):
            # A word cut off by max_length, or with no piece at all, is tagged "O".
            tags = [self.labels[i] if i >= 0 else "O"
                    for i in word_predictions(feature.word_ids, ids.tolist(), len(sentence.tokens), -1)]
            entities = [{"type": kind, "text": " ".join(sentence.tokens[first:last + 1]), "start": first,
                         "end": last + 1} for kind, first, last in extract_entities(tags)]
            results.append({**record, "words": sentence.tokens, "tags": tags, "entities": entities})
        return results

    def _answer(self, records: Sequence[Record], batch_size: int) -> list[dict[str, Any]]:
        examples = [QAExample(str(i), _text(record, "question", i), _text(record, "context", i), [])
                    for i, record in enumerate(records)]
        features = encode_qa(self.tokenizer, examples, self.max_length, default_doc_stride(self.max_length))
        logits = self._run(features, batch_size, lambda output, lengths: [
            (start[:n].float().cpu().numpy(), end[:n].float().cpu().numpy())
            for start, end, n in zip(output.start_logits, output.end_logits, lengths)])
        start_logits, end_logits = zip(*logits)
        answers = decode_answers(examples, features, start_logits, end_logits, self.decoding)
        return [{**record, "answer": answers[example.id].text, "score": answers[example.id].probability,
                 "start": answers[example.id].start, "end": answers[example.id].end}
                for example, record in zip(examples, records)]

    @torch.inference_mode()
    def _run(self, features: Sequence[Feature | QAFeature], batch_size: int,
             rows: Callable[[Any, list[int]], list]) -> list:
        """Run the model over length-sorted batches; `rows(output, lengths)` cuts each batch's output into one
        item per feature (trimmed to its real length where it has a token axis). Items return in input order."""
        self.model.eval()
        results: list = [None] * len(features)
        for index in length_sorted_batches([len(feature.input_ids) for feature in features], batch_size):
            batch = collate([features[i] for i in index], self.tokenizer.pad_id)
            output = self.model(**{name: batch[name].to(self.model.device)
                                   for name in ("input_ids", "attention_mask", "token_type_ids")})
            for i, item in zip(index, rows(output, [len(features[i].input_ids) for i in index])):
                results[i] = item.cpu() if isinstance(item, torch.Tensor) else item
        return results


def predict(model_dir: str | os.PathLike, records: Sequence[Record], task: str | None = None,
            batch_size: int = 32, decoding: QADecoding | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Load `model_dir` and predict `records` (see the module docstring for their fields; `decoding`: see
    Predictor.load)."""
    return Predictor.load(model_dir, task, decoding=decoding).predict(records, batch_size)


def _qa_decoding(label_map: Mapping[str, Any], folder: os.PathLike,
                 decoding: QADecoding | Mapping[str, Any] | None) -> QADecoding:
    """`decoding` if it is a QADecoding, else the folder's saved decoding with the changes `decoding` names."""
    if isinstance(decoding, QADecoding):
        return decoding
    saved = label_map.get("qa_decoding") or {}
    if not isinstance(saved, Mapping) or not set(saved) <= {field.name for field in dataclasses.fields(QADecoding)}:
        raise CheckpointError(f"{folder}/label_map.json: 'qa_decoding' should map n_best, max_answer_length and "
                              f"null_score_threshold to values, got {saved!r}")
    return QADecoding(**{**saved, **(decoding or {})})


def _text(record: Record, field: str, index: int) -> str:
    if not isinstance(record, Mapping) or field not in record:
        raise InputError(f"record {index + 1}: no '{field}' field")
    if not isinstance(record[field], str):
        raise InputError(f"record {index + 1}: '{field}' should be text, got {type(record[field]).__name__}")
    return record[field]


def _optional_text(record: Record, field: str, index: int) -> str | None:
    return _text(record, field, index) if field in record else None


def _words(record: Record, index: int) -> list[str]:
    """A sentence's words: its "tokens" list as given, else its "text" split on whitespace."""
    if isinstance(record, Mapping) and "tokens" in record:
        tokens = record["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise InputError(f"record {index + 1}: 'tokens' should be a list of strings")
        return tokens
    return _text(record, "text", index).split()


def read_records(lines: Sequence[str], source: str) -> list[dict[str, Any]]:
    """Records from input lines: a line starting with "{" is a JSON object, any other non-blank line is
    {"text": line}. A bad line is reported with its number."""
    records = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise InputError(f"{source}:{number}: bad JSON ({error.msg})") from None
        else:
            records.append({"text": line})
    if not records:
        raise InputError(f"{source}: no records to predict")
    return records

