"""The three disjoint splits a comparison uses, and their files.

    test        --test FILE, else a seeded --test-fraction of the training file: finetune's own
                `split_off_validation`, so with the defaults (0.1, seed 0) it is exactly the set that
                `minibert finetune --validation-fraction 0.1 --split-seed 0` holds out
    labelled    optionally a seeded sample of N of the rest (--labelled N: the scarce-label setting; validation
                then comes out of these N too, as it would for a user who has only N labels)
    validation  a seeded --validation-fraction of what is left, never of the test set
    train       the rest

They are written to OUT/splits/ in the task's own format (JSON lines for text tasks, CoNLL for ner, SQuAD JSON for
qa): every fine-tuning run of the comparison reads those files, and anyone can rerun one with
`minibert finetune --train OUT/splits/train.jsonl --validation OUT/splits/validation.jsonl ...`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from minibert.errors import DataError, spelled
from minibert.finetuning.kinds import TaskKind
from minibert.finetuning.readers import QAExample, TaggedSentence, TextExample
from minibert.finetuning.run import DataSpec, check_classes, read_task_examples, split_off_validation
from minibert.plumbing.atomic_files import atomic_write_text

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    train: list
    validation: list
    test: list

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


def make_splits(kind: TaskKind, train_data: str | os.PathLike, data: DataSpec, *,
                test_data: str | os.PathLike | None = None, test_fraction: float = 0.1, split_seed: int = 0,
                labelled: int | None = None, validation_fraction: float = 0.1) -> Splits:
    """Read the task's examples and split them (module docstring); refuse splits a comparison cannot use."""
    examples = read_task_examples(kind, train_data, data)
    if test_data is not None:
        rest, test = examples, read_task_examples(kind, test_data, data, default_split="test")
    elif not 0.0 < test_fraction < 1.0:
        raise DataError(f"{spelled('test_fraction')} must be between 0 and 1 (or give {spelled('test_data')}), got "
                        f"{test_fraction}")
    else:
        rest, test = split_off_validation(examples, test_fraction, split_seed)
    if labelled is not None:
        rest = labelled_sample(rest, labelled, split_seed, train_data)
    train, validation = split_off_validation(rest, validation_fraction, split_seed)
    check_classes(kind, train, train_data)
    splits = Splits(train, validation, test)
    check_labels_known(kind, splits)
    return splits


def labelled_sample(examples: list, size: int, seed: int, source: str | os.PathLike) -> list:
    """A seeded sample of `size` examples, in the file's order."""
    if size > len(examples):
        raise DataError(f"{spelled('labelled')} {size}: {source} has only {len(examples)} training examples "
                        "once the test set is held out")
    keep = np.random.default_rng(seed).permutation(len(examples))[:size]
    return [examples[i] for i in sorted(keep)]


def check_labels_known(kind: TaskKind, splits: Splits) -> None:
    """A validation or test label the training split never shows cannot be predicted (and fine-tuning would
    refuse it only later, in the middle of the runs): refuse it now, naming its line."""
    if kind.name != "classification":
        return
    known = {example.label for example in splits.train}
    for name in ("validation", "test"):
        for example in getattr(splits, name):
            if example.label not in known:
                raise DataError(f"{example.origin}: label {example.label!r} of the {name} split is not among the "
                                f"training split's labels ({', '.join(sorted(known))}); use more labelled data or "
                                "another split seed")


# -- the files ----------------------------------------------------------------------------------------------------
def split_file_name(kind: TaskKind, split: str) -> str:
    return split + {"ner": ".conll", "qa": ".json"}.get(kind.name, ".jsonl")


def write_splits(kind: TaskKind, splits: Splits, folder: Path) -> dict[str, Path]:
    """Each split in the task's own format under `folder`; returns split name -> file."""
    files = split_files(kind, folder)
    write_split_texts(files, split_texts(kind, splits))
    return files


def split_files(kind: TaskKind, folder: Path) -> dict[str, Path]:
    """Split name -> its file under `folder`."""
    return {name: folder / split_file_name(kind, name) for name in SPLITS}


def split_texts(kind: TaskKind, splits: Splits) -> dict[str, str]:
    """Split name -> the text of its file (the fingerprint is taken of these, before anything is written)."""
    return {name: render(kind, getattr(splits, name)) for name in SPLITS}


def write_split_texts(files: dict[str, Path], texts: dict[str, str]) -> None:
    for name in SPLITS:
        atomic_write_text(files[name], texts[name])


def render(kind: TaskKind, examples: Sequence) -> str:
    if kind.name == "ner":
        return "".join(conll_sentence(sentence) for sentence in examples)
    if kind.name == "qa":
        return json.dumps(squad_document(examples), ensure_ascii=False, indent=1) + "\n"
    return "".join(json.dumps(text_record(example), ensure_ascii=False) + "\n" for example in examples)


def text_record(example: TextExample) -> dict[str, str]:
    record = {"text": example.text, "label": example.label}
    if example.pair is not None:
        record["pair"] = example.pair
    return record


def conll_sentence(sentence: TaggedSentence) -> str:
    return "".join(f"{token}\t{tag}\n" for token, tag in zip(sentence.tokens, sentence.tags)) + "\n"


def squad_document(examples: Sequence[QAExample]) -> dict:
    """One paragraph per question, as SQuAD's layout allows."""
    paragraphs = [{"context": example.context,
                   "qas": [{"id": example.id, "question": example.question, "answers": example.answers,
                            "is_impossible": example.is_impossible}]} for example in examples]
    return {"version": "minibert compare split", "data": [{"title": "split", "paragraphs": paragraphs}]}


def written_data_spec(kind: TaskKind, splits: Splits) -> DataSpec:
    """How finetune reads the written files back."""
    has_pairs = kind.name in ("classification", "regression") and any(
        example.pair is not None for name in SPLITS for example in getattr(splits, name))
    return DataSpec(text_column="text", pair_column="pair" if has_pairs else None, label_column="label",
                    format="jsonl")


def texts_fingerprint(texts: dict[str, str]) -> str:
    """sha256 over the split files' bytes (UTF-8, as written): what a finished run is keyed on, with the other
    settings."""
    digest = hashlib.sha256()
    for name in SPLITS:
        digest.update(name.encode() + b"\0" + texts[name].encode("utf-8") + b"\0")
    return digest.hexdigest()
