"""Features with the real bert-base-uncased vocabulary: truncation, word-piece label alignment, QA windows and
the decoding of QA logits back to exact context text."""

import numpy as np
import pytest
import torch

from minibert.plumbing.demo_assets import asset_path
from minibert.errors import DataError
from minibert.finetuning.features import (collate, encode_classification, encode_qa, encode_token_classification,
                                          word_predictions)
from minibert.finetuning.qa_decoding import QADecoding, decode_answers
from minibert.finetuning.readers import QAExample, TaggedSentence, TextExample
from minibert.model import IGNORE_INDEX
from minibert.tokenizer import BertTokenizer

VOCAB = asset_path("minilm") / "vocab.txt"


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizer:
    return BertTokenizer.from_vocab(VOCAB)


# -- sequence classification ----------------------------------------------------------------------------------
def test_single_texts_get_cls_sep_and_label_ids(tokenizer):
    examples = [TextExample("A fine film.", label="pos"), TextExample("Dull.", label="neg")]
    features = encode_classification(tokenizer, examples, label_map={"neg": 0, "pos": 1})
    assert tokenizer.convert_ids_to_tokens(features[0].input_ids) == ["[CLS]", "a", "fine", "film", ".", "[SEP]"], \
        "a single text should be [CLS] text [SEP]"
    assert [f.label for f in features] == [1, 0], "labels should map through the label map"


def test_pairs_truncate_the_longer_side_first(tokenizer):
    long_text = " ".join(["word"] * 50)
    [feature] = encode_classification(tokenizer, [TextExample(long_text, pair="short pair")], max_length=16)
    assert len(feature.input_ids) == 16, f"pair should be cut to max_length 16, got {len(feature.input_ids)}"
    pair_tokens = [token for token, segment in zip(tokenizer.convert_ids_to_tokens(feature.input_ids),
                                                   feature.token_type_ids) if segment == 1]
    assert pair_tokens == ["short", "pair", "[SEP]"], f"longest_first should spare the short pair: {pair_tokens}"


def test_regression_labels_are_floats_and_collate_as_float(tokenizer):
    features = encode_classification(tokenizer, [TextExample("a", "b", "4.2"), TextExample("c", "d", "0")],
                                     regression=True)
    batch = collate(features, tokenizer.pad_id)
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == pytest.approx([4.2, 0.0]), \
        "regression labels should collate to a float tensor"


def test_unknown_eval_label_and_bad_score_name_file_and_line(tokenizer):
    with pytest.raises(DataError, match=r"dev\.tsv:3: label 'maybe'"):
        encode_classification(tokenizer, [TextExample("x", label="maybe", origin="dev.tsv:3")],
                              label_map={"no": 0, "yes": 1})
    with pytest.raises(DataError, match=r"dev\.tsv:5: score 'high' is not a number"):
        encode_classification(tokenizer, [TextExample("x", label="high", origin="dev.tsv:5")], regression=True)


def test_collate_pads_to_the_longest_and_leaves_out_absent_labels(tokenizer):
    features = encode_classification(tokenizer, [TextExample("one"), TextExample("one two three")])
    batch = collate(features, tokenizer.pad_id)
    assert batch["input_ids"].shape == (2, 5), f"batch should be as wide as its longest: {batch['input_ids'].shape}"
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "attention mask marks real tokens"
    assert batch["input_ids"][0, 3:].tolist() == [tokenizer.pad_id] * 2, "padding should use pad_id"
    assert "labels" not in batch, "test-set features (no labels) should collate without labels"
    assert all(t.dtype == torch.long for t in batch.values()), "inputs should be LongTensors"


# -- token classification -------------------------------------------------------------------------------------
def test_word_split_into_pieces_gets_its_label_once(tokenizer):
    label_map = {"O": 0, "B-PER": 1, "I-PER": 2}
    sentence = TaggedSentence(["Peter", "unaffable", "Blackburn"], ["B-PER", "O", "B-PER"])
    [feature] = encode_token_classification(tokenizer, [sentence], label_map)
    tokens = tokenizer.convert_ids_to_tokens(feature.input_ids)
    assert tokens == ["[CLS]", "peter", "una", "##ffa", "##ble", "blackburn", "[SEP]"], f"test setup: {tokens}"
    assert feature.label == [IGNORE_INDEX, 1, 0, IGNORE_INDEX, IGNORE_INDEX, 1, IGNORE_INDEX], \
        f"label on each word's first piece only, -100 on other pieces and [CLS]/[SEP]: {feature.label}"
    assert feature.word_ids == [None, 0, 1, 1, 1, 2, None], "word_ids should map pieces back to words"


def test_predictions_map_back_to_every_word(tokenizer):
    sentence = TaggedSentence(["Peter", "\ufe0f", "unaffable"], ["B-PER", "O", "O"])  # U+FE0F normalises to nothing
    [feature] = encode_token_classification(tokenizer, [sentence], {"O": 0, "B-PER": 1})
    token_predictions = [7] + [1] * (len(feature.input_ids) - 1)
    token_predictions[feature.word_ids.index(2)] = 0  # the first piece of "unaffable" says O
    words = word_predictions(feature.word_ids, token_predictions, n_words=3, fill=0)
    assert words == [1, 0, 0], f"one prediction per word from its first piece; a piece-less word gets fill: {words}"


def test_token_labels_pad_with_ignore_index(tokenizer):
    sentences = [TaggedSentence(["a"], ["O"]), TaggedSentence(["a", "b", "c"], ["O", "O", "O"])]
    batch = collate(encode_token_classification(tokenizer, sentences, {"O": 0}), tokenizer.pad_id)
    assert batch["labels"][0].tolist() == [IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX], \
        "token labels should be padded with -100 so padding adds no loss"


def test_unknown_tag_names_sentence_origin(tokenizer):
    with pytest.raises(DataError, match=r"ner\.txt:12 word 2: label 'B-ALIEN'"):
        encode_token_classification(tokenizer, [TaggedSentence(["a", "b"], ["O", "B-ALIEN"], "ner.txt:12")],
                                    {"O": 0})


# -- question answering ---------------------------------------------------------------------------------------
ANSWER = "Café Odéon, Zürich"


def qa_example(words_before: int) -> QAExample:
    before = " ".join(f"filler{i}" for i in range(words_before))
    context = f"{before} The poets met at the {ANSWER}  in 1916, said the guide. " + "More text here. " * 12
    return QAExample(f"q{words_before}", " Where did the poets meet?", context,
                     [{"text": ANSWER, "answer_start": context.index(ANSWER)}])


def oracle_logits(features, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits a perfect model would give: 10 at each window's gold start/end token, 0 elsewhere; rows padded."""
    starts, ends = np.zeros((len(features), width)), np.zeros((len(features), width))
    for row, feature in enumerate(features):
        if feature.start_position:
            starts[row, feature.start_position] = ends[row, feature.end_position] = 10.0
    return starts, ends


def decode_qa_predictions(examples, features, starts, ends, null_score_threshold=None, **settings) -> dict[str, str]:
    """Answer texts by example id (SQuAD 1.1 decoding, never "", unless a threshold is given)."""
    decoding = QADecoding(null_score_threshold=null_score_threshold, **settings)
    return {qid: answer.text for qid, answer in decode_answers(examples, features, starts, ends, decoding).items()}


def context_tokens(window) -> list[tuple[int, int]]:
    return [offset for offset in window.offsets if offset is not None]


def test_long_context_becomes_overlapping_windows(tokenizer):
    features = encode_qa(tokenizer, [qa_example(40)], max_length=48, doc_stride=16)
    assert len(features) > 2, f"a long context should need several windows, got {len(features)}"
    assert all(len(f.input_ids) <= 48 for f in features), "every window must fit max_length"
    for first, second in zip(features, features[1:]):
        assert context_tokens(first)[-16:] == context_tokens(second)[:16], "windows should overlap by doc_stride"
    question_end = features[0].input_ids.index(tokenizer.sep_id)
    assert all(f.offsets[:question_end + 1] == [None] * (question_end + 1) for f in features), \
        "offsets must be kept for context tokens only"
    assert tokenizer.decode(features[1].input_ids[1:question_end]) == "where did the poets meet?", \
        "every window should repeat the whole question"


def test_oracle_logits_recover_the_exact_answer_wherever_the_windows_cut(tokenizer):
    examples = [qa_example(words_before) for words_before in range(20, 44)]
    features = encode_qa(tokenizer, examples, max_length=48, doc_stride=16)
    straddled = 0
    for feature in features:
        example = next(e for e in examples if e.id == feature.example_id)
        start_char = example.answers[0]["answer_start"]
        spans = context_tokens(feature)
        holds_start = spans[0][0] <= start_char < spans[-1][1]
        holds_end = spans[0][0] < start_char + len(ANSWER) <= spans[-1][1]
        straddled += holds_start != holds_end
        if holds_start and holds_end:
            cut = example.context[feature.offsets[feature.start_position][0]:feature.offsets[feature.end_position][1]]
            assert cut == ANSWER, f"{feature.example_id}: gold positions cover {cut!r}, not the answer"
        else:
            assert (feature.start_position, feature.end_position) == (0, 0), \
                f"{feature.example_id}: a window without the whole answer should point at [CLS]"
    assert straddled, "test setup: no window edge cut through the answer"
    starts, ends = oracle_logits(features, width=64)
    answers = decode_qa_predictions(examples, features, starts, ends)
    wrong = {qid: text for qid, text in answers.items() if text != ANSWER}
    assert not wrong, f"oracle logits should decode to the exact answer text, got {wrong}"


def test_v2_no_answer_decodes_to_empty_string(tokenizer):
    answerable = qa_example(5)
    impossible = QAExample("none", "Who won in 2020?", answerable.context, [], is_impossible=True)
    features = encode_qa(tokenizer, [answerable, impossible], max_length=48, doc_stride=16)
    assert all((f.start_position, f.end_position) == (0, 0) for f in features if f.example_id == "none"), \
        "an impossible question's windows should all point at [CLS]"
    starts, ends = oracle_logits(features, width=48)
    for row, feature in enumerate(features):
        if feature.example_id == "none":
            starts[row, 0] = ends[row, 0] = 10.0
    answers = decode_qa_predictions([answerable, impossible], features, starts, ends, null_score_threshold=0.0)
    assert answers == {answerable.id: ANSWER, "none": ""}, f"v2 should answer '' when null scores best: {answers}"


def test_decoding_respects_max_answer_length(tokenizer):
    example = qa_example(0)
    features = encode_qa(tokenizer, [example], max_length=64, doc_stride=16)
    starts, ends = oracle_logits(features, width=64)
    span_tokens = features[0].end_position - features[0].start_position + 1
    answers = decode_qa_predictions([example], features, starts, ends, max_answer_length=span_tokens - 1)
    assert answers[example.id] != ANSWER, "a span longer than max_answer_length must not be chosen"


def test_question_too_long_for_the_window_names_the_question(tokenizer):
    example = QAExample("long-q", "why " * 40, "Some context.", [])
    with pytest.raises(DataError, match="question long-q: its 40 tokens leave"):
        encode_qa(tokenizer, [example], max_length=48, doc_stride=16)


def test_qa_collate_gives_start_and_end_positions(tokenizer):
    features = encode_qa(tokenizer, [qa_example(0)], max_length=64, doc_stride=16)
    batch = collate(features, tokenizer.pad_id)
    assert batch["start_positions"].tolist() == [f.start_position for f in features], "start positions lost"
    assert batch["end_positions"].tolist() == [f.end_position for f in features], "end positions lost"


def test_answer_positions_match_transformers_run_qa(tokenizer):
    """The labelling loop of transformers' examples/pytorch/question-answering/run_qa.py, run on its fast
    tokenizer, must give the same windows and start/end positions as encode_qa."""
    from transformers import BertTokenizerFast

    examples = [qa_example(words_before) for words_before in range(0, 44, 3)]
    encoded = BertTokenizerFast(str(VOCAB))(
        [e.question.lstrip() for e in examples], [e.context for e in examples], truncation="only_second",
        max_length=48, stride=16, return_overflowing_tokens=True, return_offsets_mapping=True)
    expected = []
    for window, offsets in enumerate(encoded["offset_mapping"]):
        sequence_ids = encoded.sequence_ids(window)
        answer = examples[encoded["overflow_to_sample_mapping"][window]].answers[0]
        start_char, end_char = answer["answer_start"], answer["answer_start"] + len(answer["text"])
        first = sequence_ids.index(1)
        last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            expected.append((0, 0))
            continue
        while first < len(offsets) and offsets[first][0] <= start_char:
            first += 1
        while offsets[last][1] >= end_char:
            last -= 1
        expected.append((first - 1, last + 1))
    features = encode_qa(tokenizer, examples, max_length=48, doc_stride=16)
    assert [f.input_ids for f in features] == encoded["input_ids"], "windows differ from transformers' tokenizer"
    assert [(f.start_position, f.end_position) for f in features] == expected, \
        "answer token positions differ from run_qa.py's"
