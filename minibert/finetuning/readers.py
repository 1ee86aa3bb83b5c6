"""Readers for the data that fine-tuning uses: CSV/TSV/JSONL tables, GLUE's TSV files, CoNLL token/tag files and
SQuAD JSON. Each returns a plain list of small dataclasses. Examples remember where they came from (`origin`,
"file:line"), so a bad label found later, while building features, is still reported against the line holding it."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, TextIO

from minibert.errors import DataError
from minibert.plumbing.text_files import read_text


# -- what the readers return ----------------------------------------------------------------------------------
@dataclass
class TextExample:
    """A text (or text pair) with its label as written in the file: a class name, or a number as text for
    regression. Labels become numbers only in features, where the label map is known."""
    text: str
    pair: str | None = None
    label: str | None = None
    origin: str = ""


@dataclass
class TaggedSentence:
    """One sentence of a CoNLL file: a tag per token; `origin` is the file and line of its first token.
    Sentences to tag (prediction input) have `tags` None."""
    tokens: list[str]
    tags: list[str] | None
    origin: str = ""


@dataclass
class QAExample:
    """One SQuAD question. `answers` holds {"text", "answer_start"} dicts (several in dev sets, where each
    annotator's answer counts); SQuAD 2.0's unanswerable questions have none and `is_impossible` set."""
    id: str
    question: str
    context: str
    answers: list[dict[str, Any]]
    is_impossible: bool = False


# -- tables: CSV, TSV, JSON lines -----------------------------------------------------------------------------
FORMATS_BY_EXTENSION = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def read_examples(path: str | os.PathLike, text_column: str, pair_column: str | None = None,
                  label_column: str | None = None, format: str | None = None,
                  where: Mapping[str, str] | None = None, encoding: str = "utf-8") -> list[TextExample]:
    """Read a table with named columns. `format` ("csv", "tsv" or "jsonl") defaults to the file's extension;
    ".json" is read as JSON lines, one object per line, the layout `datasets` exports. `where` keeps only the
    rows whose columns hold the given values (e.g. {"source": "rotten_tomatoes"} in a file mixing datasets).
    `encoding` is the file's text encoding (every reader here takes one)."""
    path = Path(path)
    format = format or FORMATS_BY_EXTENSION.get(path.suffix.lower())
    if format not in ("csv", "tsv", "jsonl"):
        raise DataError(f"{path}: cannot tell the format from the extension; pass format='csv', 'tsv' or 'jsonl'")
    records = _jsonl_records(path, encoding) if format == "jsonl" else _table_records(path, format, encoding)
    examples = [_example_from_record(record, origin, text_column, pair_column, label_column)
                for origin, record in records if _matches(record, where or {}, origin)]
    return _non_empty(examples, f"{path}{_describe(where)}")


def _matches(record: Mapping[str, Any], where: Mapping[str, str], origin: str) -> bool:
    return all(_field(record, column, origin) == value for column, value in where.items())


def _describe(where: Mapping[str, str] | None) -> str:
    return "" if not where else " (rows where " + ", ".join(f"{k}={v}" for k, v in where.items()) + ")"


def _open_text(path: Path, encoding: str) -> TextIO:
    # read_text drops the byte-order mark that Excel and MRPC's files start with, which would corrupt the first
    # column's name. newline="" lets the csv module see line breaks inside quoted fields.
    return io.StringIO(read_text(path, encoding), newline="")


def _delimited_rows(path: Path, format: str, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank row. TSV is split on tabs and nothing else: GLUE's sentences
    hold bare quote marks that a CSV parser would take for field quoting."""
    with _open_text(path, encoding) as file:
        if format == "tsv":
            for line_number, line in enumerate(file, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line_number, line.split("\t")
        else:
            reader = csv.reader(file)
            for fields in reader:
                if fields:
                    yield reader.line_num, fields


def _records(path: Path, rows: Iterable[tuple[int, list[str]]],
             header: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """Pair each row's fields with the header's names; a row with another field count is malformed."""
    for line_number, fields in rows:
        if len(fields) != len(header):
            raise DataError(f"{path}:{line_number}: expected {len(header)} columns, got {len(fields)}")
        yield f"{path}:{line_number}", dict(zip(header, fields))


def _table_records(path: Path, format: str, encoding: str) -> Iterator[tuple[str, dict[str, str]]]:
    rows = _delimited_rows(path, format, encoding)
    first = next(rows, None)
    if first is not None:
        yield from _records(path, rows, header=first[1])


def _jsonl_records(path: Path, encoding: str) -> Iterator[tuple[str, dict[str, Any]]]:
    with _open_text(path, encoding) as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{line_number}: bad JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
            yield f"{path}:{line_number}", record


def _example_from_record(record: Mapping[str, Any], origin: str, text_column: str, pair_column: str | None,
                         label_column: str | None) -> TextExample:
    return TextExample(text=_field(record, text_column, origin),
                       pair=_field(record, pair_column, origin) if pair_column else None,
                       label=_field(record, label_column, origin) if label_column else None,
                       origin=origin)


def _field(record: Mapping[str, Any], column: str, origin: str) -> str:
    """A column's value as text; JSON numbers and booleans keep their JSON spelling ("1", "0.5", "true")."""
    if column not in record:
        raise DataError(f"{origin}: no column '{column}' (columns: {', '.join(map(str, record))})")
    value = record[column]
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    raise DataError(f"{origin}: column '{column}' is {json.dumps(value)[:40]}, expected text or a number")


def _non_empty(examples: list, source: str | os.PathLike) -> list:
    if not examples:
        raise DataError(f"{source}: no examples")
    return examples


# -- GLUE -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GlueTask:
    """Where a GLUE task's TSV files keep text and labels, and the metric the GLUE leaderboard ranks it by."""
    text_column: str
    pair_column: str | None
    label_column: str
    labels: tuple[str, ...] | None  # None: regression (STS-B's 0-5 similarity score)
    metric: str
    headerless_columns: tuple[str, ...] | None = None  # names for files without a header row (CoLA train/dev)

    @property
    def kind(self) -> str:
        return "regression" if self.labels is None else "classification"


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("sentence", None, "label", ("0", "1"), "mcc",
                     headerless_columns=("source", "label", "original_label", "sentence")),
    "sst2": GlueTask("sentence", None, "label", ("0", "1"), "accuracy"),
    "mrpc": GlueTask("#1 String", "#2 String", "Quality", ("0", "1"), "f1"),
    "qqp": GlueTask("question1", "question2", "is_duplicate", ("0", "1"), "f1"),
    "stsb": GlueTask("sentence1", "sentence2", "score", None, "pearson"),
    "mnli": GlueTask("sentence1", "sentence2", "gold_label", ("contradiction", "entailment", "neutral"),
                     "accuracy"),
    "qnli": GlueTask("question", "sentence", "label", ("entailment", "not_entailment"), "accuracy"),
    "rte": GlueTask("sentence1", "sentence2", "label", ("entailment", "not_entailment"), "accuracy"),
    "wnli": GlueTask("sentence1", "sentence2", "label", ("0", "1"), "accuracy"),
}


def read_glue(task: str, path: str | os.PathLike, encoding: str = "utf-8") -> list[TextExample]:
    """Read one GLUE TSV file (train, dev or test) of `task`. Test files have no label column; their examples
    get `label=None`. Labels are checked against the task's label set (STS-B's must be numbers)."""
    spec = glue_task(task)
    path = Path(path)
    rows = _delimited_rows(path, "tsv", encoding)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}: no examples")
    if spec.text_column in first[1]:
        header = first[1]
    elif spec.headerless_columns is not None:
        header, rows = spec.headerless_columns, itertools.chain([first], rows)
    else:
        raise DataError(f"{path}:1: header has no column '{spec.text_column}' that GLUE task {task} needs")
    label_column = spec.label_column if spec.label_column in header else None
    examples = []
    for origin, record in _records(path, rows, header):
        example = _example_from_record(record, origin, spec.text_column, spec.pair_column, label_column)
        if example.label is not None:
            _check_glue_label(example, task, spec)
        examples.append(example)
    return _non_empty(examples, path)


def glue_task(task: str) -> GlueTask:
    if task not in GLUE_TASKS:
        raise DataError(f"unknown GLUE task '{task}'; known: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[task]


def _check_glue_label(example: TextExample, task: str, spec: GlueTask) -> None:
    if spec.labels is None:
        parse_score(example.label, example.origin)
    elif example.label not in spec.labels:
        raise DataError(f"{example.origin}: label '{example.label}' is not one of {', '.join(spec.labels)} "
                        f"(GLUE task {task})")


def parse_score(label: str, origin: str) -> float:
    """A regression target as a float; a value that is not a finite number (text, nan, inf) is reported with its
    file and line: one NaN target would make every loss after it NaN, far from the line that caused it."""
    try:
        score = float(label)
    except ValueError:
        raise DataError(f"{origin}: score '{label}' is not a number") from None
    if not math.isfinite(score):
        raise DataError(f"{origin}: score '{label}' is not a finite number")
    return score


# -- CoNLL token/tag files (NER) ------------------------------------------------------------------------------
def read_conll(path: str | os.PathLike, encoding: str = "utf-8") -> list[TaggedSentence]:
    """Read `token<TAB>TAG` lines (or space-separated columns, the tag last, as CoNLL-2003 has them); a blank
    or whitespace-only line ends a sentence, and `-DOCSTART-` document markers are skipped."""
    path = Path(path)
    sentences: list[TaggedSentence] = []
    current: TaggedSentence | None = None
    with _open_text(path, encoding) as file:
        for line_number, line in enumerate(file, start=1):
            line = line.rstrip("\r\n")
            fields = line.split("\t") if "\t" in line else line.split()
            if not line.strip() or fields[0] == "-DOCSTART-":
                current = None
                continue
            if len(fields) < 2 or not fields[-1].strip():
                raise DataError(f"{path}:{line_number}: expected a token and a tag, got '{line.strip()}'")
            if current is None:
                current = TaggedSentence([], [], f"{path}:{line_number}")
                sentences.append(current)
            current.tokens.append(fields[0])
            current.tags.append(fields[-1].strip())
    return _non_empty(sentences, path)


# -- SQuAD v1.1 / v2.0 ----------------------------------------------------------------------------------------
def read_squad(path: str | os.PathLike, encoding: str = "utf-8") -> list[QAExample]:
    """Read a SQuAD JSON file, checking that each answer's text sits at its `answer_start` in the context:
    training targets are built from that character position, so a wrong one would teach a wrong span."""
    path = Path(path)
    with _open_text(path, encoding) as file:
        try:
            squad = json.load(file)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{error.lineno}: bad JSON ({error.msg})") from None
    try:
        examples = [_qa_example(question, paragraph["context"], path)
                    for article in squad["data"]
                    for paragraph in article["paragraphs"]
                    for question in paragraph["qas"]]
    except (KeyError, TypeError) as error:
        raise DataError(f"{path}: not in SQuAD layout (data/paragraphs/qas; missing or bad {error})") from None
    return _non_empty(examples, path)


def _answer_start(value: Any, question_id: str, path: Path) -> int:
    """A character offset: an int, or an int written as text (some exports quote it)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise DataError(f"{path}: question {question_id}: answer_start {json.dumps(value)[:40]} is not a character "
                        "position (a whole number)")
    return int(value)


def _qa_example(question: Mapping[str, Any], context: str, path: Path) -> QAExample:
    question_id = str(question["id"])
    answers = [{"text": answer["text"], "answer_start": _answer_start(answer["answer_start"], question_id, path)}
               for answer in question.get("answers", [])]
    for answer in answers:
        start, text = answer["answer_start"], answer["text"]
        found = context[start:start + len(text)]
        if text not in context:
            raise DataError(f"{path}: question {question_id}: answer {text!r} does not occur in its context")
        if found != text:
            raise DataError(f"{path}: question {question_id}: answer {text!r} is not at answer_start {start} "
                            f"(the context there reads {found!r})")
    return QAExample(question_id, question["question"], context, answers,
                     bool(question.get("is_impossible", False)))


# -- the datasets hub (optional) ------------------------------------------------------------------------------
def load_hub_dataset(name: str, split: str, text_column: str, pair_column: str | None = None,
                     label_column: str | None = None, config: str | None = None) -> list[TextExample]:
    """Load a split from the Hugging Face hub through `datasets`, which is imported here only: it is a heavy,
    optional dependency that nothing else in minibert needs. Class labels come back as their ids ("0", "1")."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{name}: loading hub datasets needs the `datasets` package: pip install datasets "
                        f"(or pip install 'minibert[hub-datasets]')") from None
    rows = datasets.load_dataset(name, config, split=split)
    examples = [_example_from_record(row, f"{name}[{split}] row {index}", text_column, pair_column, label_column)
                for index, row in enumerate(rows)]
    return _non_empty(examples, f"{name}[{split}]")


# -- label maps -----------------------------------------------------------------------------------------------
def build_label_map(labels: Iterable[str]) -> dict[str, int]:
    """Give each distinct label an id, in sorted order so that the ids do not depend on the order of the
    training file and mean the same on the next run. Numeric labels sort as numbers ("2" before "10")."""
    distinct = set(labels)
    if all(_is_number(label) for label in distinct):
        ordered = sorted(distinct, key=lambda label: (float(label), label))
    else:
        ordered = sorted(distinct)
    return {label: index for index, label in enumerate(ordered)}


def label_id(label: str, label_map: Mapping[str, int], origin: str) -> int:
    """The id of `label`. An evaluation label that training never saw is an error, not a silently wrong id."""
    if label not in label_map:
        raise DataError(f"{origin}: label '{label}' is not among the training labels ({', '.join(label_map)})")
    return label_map[label]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
