"""Readers on small hand-written files in the public formats, including the malformed rows users will hit."""

import json
import re
import sys
from pathlib import Path

import pytest

from minibert.plumbing.demo_assets import asset_path
from minibert.errors import DataError
from minibert.finetuning.metrics import compute_metrics
from minibert.finetuning.readers import (GLUE_TASKS, build_label_map, label_id, load_hub_dataset, read_conll,
                                         read_examples, read_glue, read_squad)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- tables ---------------------------------------------------------------------------------------------------
def test_csv_reads_named_columns_with_quoted_commas(tmp_path):
    path = write(tmp_path / "train.csv", 'id,text,label\n1,"Great, really great",pos\n\n2,Awful,neg\n')
    examples = read_examples(path, "text", label_column="label")
    assert [(e.text, e.label) for e in examples] == [("Great, really great", "pos"), ("Awful", "neg")], \
        "CSV columns or quoted commas were not read as written"
    assert examples[1].origin == f"{path}:4", "origin should name the file and the line the row is on"


def test_tsv_pairs_keep_quote_marks(tmp_path):
    path = write(tmp_path / "dev.tsv", 'premise\thypothesis\tlabel\nHe said "hi".\tHe spoke.\tyes\n')
    [example] = read_examples(path, "premise", pair_column="hypothesis", label_column="label")
    assert (example.text, example.pair, example.label) == ('He said "hi".', "He spoke.", "yes"), \
        "TSV must split on tabs only, keeping quote marks inside the text"


def test_jsonl_numbers_become_label_text_and_json_extension_means_lines(tmp_path):
    lines = [{"sentence": "fine", "score": 1}, {"sentence": "meh", "score": 0.5}]
    for name in ("data.jsonl", "data.json"):
        path = write(tmp_path / name, "\n".join(json.dumps(line) for line in lines) + "\n")
        examples = read_examples(path, "sentence", label_column="score")
        assert [e.label for e in examples] == ["1", "0.5"], f"{name}: JSON numbers should keep their spelling"


def test_format_argument_overrides_the_extension(tmp_path):
    path = write(tmp_path / "data.txt", "a\tb\nx\ty\n")
    assert read_examples(path, "b", format="tsv")[0].text == "y", "format='tsv' was not used for a .txt file"
    with pytest.raises(DataError, match="format"):
        read_examples(path, "b")


def test_missing_column_names_file_and_column(tmp_path):
    path = write(tmp_path / "train.csv", "sentence,label\nhello,1\n")
    with pytest.raises(DataError) as error:
        read_examples(path, "text", label_column="label")
    assert str(path) in str(error.value) and "'text'" in str(error.value), \
        f"missing-column message should name file and column: {error.value}"


def test_wrong_field_count_names_file_and_line(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\nok,1\ntoo,many,fields\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3: expected 2 columns, got 3"):
        read_examples(path, "text", label_column="label")
    path = write(tmp_path / "train.tsv", "text\tlabel\nok\t1\nno label here\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3: expected 2 columns, got 1"):
        read_examples(path, "text", label_column="label")


def test_bad_json_names_file_and_line(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"text": "ok"}\n{"text": "broken"\n')
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:2: bad JSON"):
        read_examples(path, "text")
    path = write(tmp_path / "list.jsonl", '["not", "an", "object"]\n')
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:1: expected a JSON object"):
        read_examples(path, "text")


def test_empty_and_missing_files_are_errors(tmp_path):
    path = write(tmp_path / "empty.csv", "text,label\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: no examples"):
        read_examples(path, "text")
    with pytest.raises(DataError, match="file not found"):
        read_examples(tmp_path / "absent.csv", "text")


# -- GLUE -----------------------------------------------------------------------------------------------------
def test_glue_table_covers_the_nine_tasks_with_metrics_the_dispatcher_returns():
    assert sorted(GLUE_TASKS) == sorted("cola sst2 mrpc qqp stsb mnli qnli rte wnli".split()), "GLUE task list"
    for name, task in GLUE_TASKS.items():
        scores = compute_metrics(task.kind, [0, 1, 1], [0, 1, 0])
        assert task.metric in scores, f"{name}: main metric '{task.metric}' is not among {sorted(scores)}"
    assert GLUE_TASKS["stsb"].kind == "regression" and GLUE_TASKS["mnli"].labels == (
        "contradiction", "entailment", "neutral"), "STS-B must be regression and MNLI three-way"


def test_cola_train_has_no_header_and_test_has_one(tmp_path):
    train = write(tmp_path / "train.tsv", "gj04\t1\t\tOur friends won't buy this analysis.\n"
                                          "gj04\t0\t*\tThey drank the pub.\n")
    examples = read_glue("cola", train)
    assert [(e.text, e.label) for e in examples] == [("Our friends won't buy this analysis.", "1"),
                                                     ("They drank the pub.", "0")], "CoLA columns misread"
    assert examples[0].origin == f"{train}:1", "headerless CoLA data starts on line 1"
    test = write(tmp_path / "test.tsv", "index\tsentence\n0\tBill whistled past the house.\n")
    [example] = read_glue("cola", test)
    assert (example.text, example.label) == ("Bill whistled past the house.", None), "CoLA test set misread"


def test_mrpc_reads_its_header_despite_a_byte_order_mark(tmp_path):
    path = write(tmp_path / "train.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                                         "1\t702876\t702977\tAmrozi accused his brother.\tHe accused him.\n")
    [example] = read_glue("mrpc", path)
    assert (example.text, example.pair, example.label) == ("Amrozi accused his brother.", "He accused him.", "1"), \
        "MRPC columns misread (a BOM must not hide the 'Quality' column)"


def test_mnli_dev_and_test_layouts(tmp_path):
    header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
              "sentence2_parse\tsentence1\tsentence2")
    dev = write(tmp_path / "dev_matched.tsv",
                f"{header}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                "0\t1\t1n\tfiction\t(x)\t(y)\t(X)\t(Y)\tThe cat sat.\tA cat sat.\tentailment\tentailment\t"
                "neutral\tentailment\tentailment\tentailment\n")
    [example] = read_glue("mnli", dev)
    assert (example.text, example.pair, example.label) == ("The cat sat.", "A cat sat.", "entailment"), \
        "MNLI dev must use sentence1/sentence2/gold_label"
    test = write(tmp_path / "test_matched.tsv", f"{header}\n0\t1\t1n\tfiction\t(x)\t(y)\t(X)\t(Y)\tA.\tB.\n")
    assert read_glue("mnli", test)[0].label is None, "MNLI test set has no labels and must still read"


def test_glue_labels_are_checked_with_file_and_line(tmp_path):
    path = write(tmp_path / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n"
                                       "1\tC.\tD.\tmaybe\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3: label 'maybe' is not one of entailment, "):
        read_glue("rte", path)
    stsb_header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    path = write(tmp_path / "stsb.tsv", stsb_header + "0\tmain\tf\t2012\t1\tnone\tnone\tA plane.\tA jet.\t5.000\n"
                                                      "1\tmain\tf\t2012\t2\tnone\tnone\tA man.\tA dog.\thigh\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3: score 'high' is not a number"):
        read_glue("stsb", path)


def test_glue_header_without_the_text_column_and_unknown_task(tmp_path):
    path = write(tmp_path / "dev.tsv", "id\tq1\tq2\tis_duplicate\n1\ta\tb\t0\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:1: header has no column 'question1'"):
        read_glue("qqp", path)
    with pytest.raises(DataError, match="unknown GLUE task 'squad'"):
        read_glue("squad", path)


# -- CoNLL ----------------------------------------------------------------------------------------------------
def test_conll_tabs_spaces_docstart_and_whitespace_separators(tmp_path):
    path = write(tmp_path / "ner.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\t\n"
                                       "Peter\tB-PER\nBlackburn\tI-PER\n")
    sentences = read_conll(path)
    assert [(s.tokens, s.tags) for s in sentences] == [(["EU", "rejects"], ["B-ORG", "O"]),
                                                       (["Peter", "Blackburn"], ["B-PER", "I-PER"])], \
        "token must be the first column, tag the last; DOCSTART skipped; tab-only line ends a sentence"
    assert sentences[1].origin == f"{path}:6", "a sentence's origin is the line of its first token"


def test_conll_line_without_tag_names_file_and_line(tmp_path):
    path = write(tmp_path / "ner.txt", "Peter\tB-PER\nBlackburn\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:2: expected a token and a tag"):
        read_conll(path)


def test_real_wnut16_file_reads():
    path = asset_path("wnut16")
    sentences = read_conll(path)
    assert len(sentences) == 2394, f"WNUT-16 train has 2,394 tweets, read {len(sentences)}"
    assert sum(len(s.tokens) for s in sentences) == 46469, "WNUT-16 train has 46,469 tokens"
    assert all(len(s.tokens) == len(s.tags) for s in sentences), "each token needs exactly one tag"
    assert sentences[0].tags[14:17] == ["B-facility", "I-facility", "I-facility"], "first tweet's entity misread"


# -- SQuAD ----------------------------------------------------------------------------------------------------
def squad_file(tmp_path: Path, questions: list[dict], context: str = "Paris is the capital of France.") -> Path:
    squad = {"version": "v2.0", "data": [{"title": "France", "paragraphs": [{"context": context, "qas": questions}]}]}
    return write(tmp_path / "dev.json", json.dumps(squad))


def test_squad_v1_and_v2_questions(tmp_path):
    path = squad_file(tmp_path, [
        {"id": "q1", "question": "What is the capital of France?",
         "answers": [{"text": "Paris", "answer_start": 0}, {"text": "Paris", "answer_start": 0}]},
        {"id": "q2", "question": "What is the capital of Spain?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "Paris", "answer_start": 0}]}])
    answerable, impossible = read_squad(path)
    assert (answerable.id, answerable.answers[0], answerable.is_impossible) == (
        "q1", {"text": "Paris", "answer_start": 0}, False), "v1.1-style question misread"
    assert (impossible.answers, impossible.is_impossible) == ([], True), "v2.0 unanswerable question misread"


def test_squad_answer_not_at_its_start_names_the_question(tmp_path):
    path = squad_file(tmp_path, [{"id": "q7", "question": "Which country?",
                                  "answers": [{"text": "France", "answer_start": 3}]}])
    with pytest.raises(DataError, match=r"question q7: answer 'France' is not at answer_start 3"):
        read_squad(path)


def test_squad_wrong_layout_is_a_data_error(tmp_path):
    path = write(tmp_path / "dev.json", json.dumps({"data": [{"title": "x"}]}))
    with pytest.raises(DataError, match="not in SQuAD layout"):
        read_squad(path)


# -- hub and label maps ---------------------------------------------------------------------------------------
def test_hub_loading_without_datasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail even where it is installed
    with pytest.raises(DataError, match="pip install datasets"):
        load_hub_dataset("glue", "train", "sentence")


def test_label_map_is_sorted_and_numbers_sort_as_numbers():
    assert build_label_map(["pos", "neg", "pos", "neutral"]) == {"neg": 0, "neutral": 1, "pos": 2}, \
        "label ids should follow sorted label order, not file order"
    assert build_label_map(["10", "2", "1"]) == {"1": 0, "2": 1, "10": 2}, "numeric labels should sort by value"


def test_unknown_eval_label_names_label_and_file():
    with pytest.raises(DataError, match=r"dev\.csv:4: label 'maybe' is not among the training labels"):
        label_id("maybe", {"no": 0, "yes": 1}, "dev.csv:4")
    assert label_id("yes", {"no": 0, "yes": 1}, "dev.csv:4") == 1, "a known label should map to its id"
