"""Corpus readers: the four formats, format detection, sentence splitting and the edge cases of real files."""

import itertools
import json
import types

import pytest

from minibert.pretraining.corpus import CorpusStats, detect_format, iter_documents, split_sentences
from minibert.errors import DataError


def read(paths, **kwargs):
    stats = CorpusStats()
    return list(iter_documents(paths, stats=stats, **kwargs)), stats


def test_bert_format_blank_lines_separate_documents(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("  First sentence.\nSecond one.\n\n\n\nOnly sentence of doc two.\n\nThird doc, line one.\n"
                    "Line two\n", encoding="utf-8")
    documents, stats = read(path, format="bert")
    assert documents == [["First sentence.", "Second one."], ["Only sentence of doc two."],
                         ["Third doc, line one.", "Line two"]], f"bert format read wrongly: {documents}"
    assert (stats.documents, stats.sentences) == (3, 5), f"stats count wrong: {stats}"


def test_one_sentence_documents_are_kept(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("Alone.\n\nAlso alone.\n", encoding="utf-8")
    documents, _ = read(path)
    assert documents == [["Alone."], ["Also alone."]], f"one-sentence documents were dropped: {documents}"


def test_lines_format_splits_each_line_into_sentences(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("Dr. Smith arrived. He paid 3.50 dollars.\n   \nOne more document here!\n", encoding="utf-8")
    documents, stats = read(path, format="lines")
    assert documents == [["Dr. Smith arrived.", "He paid 3.50 dollars."], ["One more document here!"]], \
        f"lines format read wrongly: {documents}"
    assert stats.skipped_empty_documents == 1, f"the blank line should count as a skipped document: {stats}"


@pytest.mark.parametrize("text, expected", [
    ("Dr. Smith went to Washington. He paid $3.50 for e.g. coffee.",
     ["Dr. Smith went to Washington.", "He paid $3.50 for e.g. coffee."]),
    ("It was 2 p.m. when J. R. R. Tolkien arrived! Why? Because.",
     ["It was 2 p.m. when J. R. R. Tolkien arrived!", "Why?", "Because."]),
    ('He said "Stop." Then he left. (It rained.) The end.',
     ['He said "Stop."', "Then he left.", "(It rained.)", "The end."]),
    ("No. 5 was built in 1990. In 2000 it closed, i.e. Later it reopened.",
     ["No. 5 was built in 1990.", "In 2000 it closed, i.e. Later it reopened."]),
    ("A line\nbreak always splits.   \n\n", ["A line", "break always splits."]),
    ("  \n ", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected, f"split_sentences({text!r}) went wrong"


def test_jsonl_with_custom_field_and_empty_text(tmp_path):
    path = tmp_path / "corpus.jsonl"
    lines = [{"body": "First doc. It has two sentences."}, {"body": "   "}, {"body": "Second doc."}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    documents, stats = read(path, text_field="body")
    assert documents == [["First doc.", "It has two sentences."], ["Second doc."]], f"jsonl read wrongly: {documents}"
    assert stats.skipped_empty_documents == 1, f"the blank text should count as skipped: {stats}"


@pytest.mark.parametrize("content, message", [('{"text": "ok"}\n{broken\n', "corpus.jsonl:2: not valid JSON"),
                                              ('{"text": "ok"}\n{"other": 1}\n', "corpus.jsonl:2: no string field")])
def test_jsonl_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        list(iter_documents(path))


def test_wiki_json_reads_extracts(tmp_path):
    path = tmp_path / "summaries.json"
    pages = {"A": {"title": "A", "extract": "Alpha is first. It leads.", "description": "", "topic": "x"},
             "B": {"title": "B", "extract": "", "description": "", "topic": "x"}}
    path.write_text(json.dumps(pages), encoding="utf-8")
    documents, stats = read(path)
    assert documents == [["Alpha is first.", "It leads."]], f"wiki-json read wrongly: {documents}"
    assert stats.skipped_empty_documents == 1, f"the empty extract should count as skipped: {stats}"


def test_detect_format(tmp_path):
    cases = {"a.jsonl": ("{}", "jsonl"), "a.json": ("{}", "wiki-json"), "b.txt": ("One.\n\nTwo.\n", "bert"),
             "l.txt": ("Doc one.\nDoc two.\n\n\n", "lines")}
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        assert detect_format(tmp_path / name) == expected, f"{name} ({content!r}) not detected as {expected}"


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"\xef\xbb\xbfCaf\xe9 is open.\nBad \xff\xfe pair.\n\nFine.\n")
    documents, stats = read(path)
    assert documents == [["Caf\ufffd is open.", "Bad \ufffd\ufffd pair."], ["Fine."]], \
        f"bad bytes not replaced as errors='replace' would (or BOM kept): {documents}"
    assert stats.replaced_bytes == 3, f"expected 3 replaced bytes, counted {stats.replaced_bytes}"


def test_empty_file_is_reported_and_skipped(tmp_path):
    (tmp_path / "a_empty.txt").write_bytes(b"")
    (tmp_path / "b_text.txt").write_text("Some text.\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="a_empty.txt"):
        documents, stats = read(tmp_path)
    assert documents == [["Some text."]], f"a folder should read its files in order: {documents}"
    assert stats.empty_files == [str(tmp_path / "a_empty.txt")], f"empty file not reported: {stats}"
    assert stats.files == 2, f"both files should be counted: {stats}"


def test_empty_corpus_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="empty corpus"):
        list(iter_documents(tmp_path / "empty.txt"))


def test_missing_file_is_named_before_reading(tmp_path):
    (tmp_path / "real.txt").write_text("Text.\n", encoding="utf-8")
    with pytest.raises(DataError, match="nope.txt: corpus file not found"):
        iter_documents([tmp_path / "real.txt", tmp_path / "nope.txt"])  # no iteration needed


def test_reading_is_lazy(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"Sentence {i}.\n\n" for i in range(1000)), encoding="utf-8")
    stats = CorpusStats()
    documents = iter_documents(path, stats=stats)
    assert isinstance(documents, types.GeneratorType), "iter_documents should stream, not build a list"
    assert list(itertools.islice(documents, 2)) == [["Sentence 0."], ["Sentence 1."]], "first documents wrong"
    assert stats.documents == 2, f"reading two documents should not read the rest: {stats}"


def test_real_wikipedia_file_streams(wiki_json):
    stats = CorpusStats()
    documents = list(itertools.islice(iter_documents(wiki_json, stats=stats), 200))
    assert len(documents) == 200, "the Wikipedia file should give at least 200 documents"
    assert all(document and all(s.strip() for s in document) for document in documents), \
        "every document should have non-empty sentences"
    assert stats.sentences / len(documents) > 2, f"lead sections have several sentences each: {stats.summary()}"
