"""minibert.tokenizer: vocab.txt and tokenizer.json build the same tokenizer, padding/truncation/pairs behave as
transformers', and a saved tokenizer loads in transformers with identical ids. Uses the real bert-base-uncased
vocabulary shipped with all-MiniLM-L6-v2."""

from __future__ import annotations

import shutil

import pytest
import torch
import transformers

from minibert.errors import CheckpointError
from minibert.tokenizer import BertTokenizer

TEXTS = [
    "Hello, world!",
    "Crème brûlée, naïve Zoë — ÉCOLE",
    "東京タワー and 北京 mixed with English",
    "emoji 😀 and symbols ©®™ ∑∞",
    "unaffable antidisestablishmentarianism",
    "x" * 150,
    "",
    "   leading and trailing spaces   ",
    "the capital of france is [MASK]. [SEP] then [UNK] and [PAD]",
]
PAIRS = [("Is this a question?", "Yes, and this is the answer."), ("", "empty first"), ("only first", "")]


@pytest.fixture(scope="module")
def from_json(minilm_dir):
    return BertTokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def from_vocab(minilm_dir):
    return BertTokenizer.from_vocab(minilm_dir / "vocab.txt")


def test_vocab_txt_and_tokenizer_json_are_identical(from_json, from_vocab):
    for kwargs in ({}, {"pairs": [b for _, b in PAIRS[:1]] * len(TEXTS)}):
        a, b = from_json(TEXTS, **kwargs), from_vocab(TEXTS, **kwargs)
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert torch.equal(a[key], b[key]), f"{key} differs between tokenizer.json and vocab.txt ({kwargs})"
    for text in TEXTS:
        assert from_json.tokenize(text) == from_vocab.tokenize(text), f"{text!r}: tokens differ"
    assert from_json.vocab_size == from_vocab.vocab_size == 30522, "vocab sizes differ"


def test_folder_with_only_vocab_txt(minilm_dir, tmp_path, from_json):
    shutil.copy(minilm_dir / "vocab.txt", tmp_path / "vocab.txt")
    tokenizer = BertTokenizer.from_pretrained(tmp_path)
    assert torch.equal(tokenizer(TEXTS)["input_ids"], from_json(TEXTS)["input_ids"]), (
        "a folder with only vocab.txt tokenizes differently from tokenizer.json")


def test_special_tokens_and_classic_wordpiece(from_json):
    assert (from_json.pad_id, from_json.unk_id, from_json.cls_id, from_json.sep_id, from_json.mask_id) == (
        0, 100, 101, 102, 103), "bert-base-uncased special ids are [PAD]=0 [UNK]=100 [CLS]=101 [SEP]=102 [MASK]=103"
    assert from_json.tokenize("unaffable") == ["una", "##ffa", "##ble"], "the WordPiece example of the BERT paper"
    assert from_json.tokenize("x" * 101) == ["[UNK]"], "words over 100 characters become [UNK]"
    assert from_json("Hello")["input_ids"][0].tolist() == [101, 7592, 102], "[CLS] hello [SEP]"


def test_padding_modes(from_json):
    longest = from_json(["a b c d", "a"])
    assert longest["input_ids"].shape == (2, 6), f"padding=True pads to the longest: {longest['input_ids'].shape}"
    assert longest["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]], "attention_mask wrong"
    assert longest["input_ids"][1, 3:].tolist() == [0, 0, 0], "padding should use [PAD] = 0"
    fixed = from_json(["a b c d", "a"], padding="max_length", max_length=10)
    assert fixed["input_ids"].shape == (2, 10), f"padding='max_length' pads to max_length: {fixed['input_ids'].shape}"
    ragged = from_json(["a b c d", "a"], padding=False)
    assert [len(x) for x in ragged["input_ids"]] == [6, 3], "padding=False returns ragged lists"
    lists = from_json(["a"], return_tensors=False)
    assert lists["input_ids"] == [[101, 1037, 102]], f"return_tensors=False returns lists: {lists['input_ids']}"


def test_truncation_and_pairs_match_transformers(from_json, minilm_dir):
    theirs = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    firsts = ["a fairly long first segment with many many words in it", "short", "one two three"]
    seconds = ["short second", "a much longer second segment that will need trimming for sure", "four five six"]
    for max_length in (8, 12, 16):
        ours = from_json(firsts, seconds, max_length=max_length)
        ref = theirs(firsts, seconds, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert torch.equal(ours[key], ref[key]), f"max_length={max_length}: {key} differs from transformers"
        assert ours["input_ids"].shape[1] <= max_length, f"max_length={max_length} not respected"
    ours = from_json(firsts, seconds, padding=False)
    for ids, types in zip(ours["input_ids"], ours["token_type_ids"]):
        assert ids[0] == 101 and ids[-1] == 102 and ids.count(102) == 2, "pair layout is [CLS] A [SEP] B [SEP]"
        first_sep = ids.index(102)
        assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1), "token_type_ids wrong for a pair"
    untruncated = from_json(["word " * 600], padding=False, truncation=False)
    assert len(untruncated["input_ids"][0]) == 602, "truncation=False should keep every token"
    truncated = from_json(["word " * 600], padding=False)
    assert len(truncated["input_ids"][0]) == 512, "default truncation is model_max_length (512)"


def test_pairs_length_mismatch(from_json):
    with pytest.raises(ValueError) as error:
        from_json(["a", "b"], ["c"])
    assert "2" in str(error.value) and "1" in str(error.value), f"message {error.value} should give both counts"


def test_save_pretrained_loads_in_transformers(from_json, minilm_dir, tmp_path):
    from_json.save_pretrained(tmp_path)
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8") == (minilm_dir / "vocab.txt").read_text(
        encoding="utf-8"), "saved vocab.txt differs from the original"
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours_again = BertTokenizer.from_pretrained(tmp_path)
    texts = TEXTS + ["a text " * 300]
    ref = theirs(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    for tokenizer, who in ((from_json, "minibert"), (ours_again, "minibert reloaded")):
        got = tokenizer(texts, max_length=512)
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert torch.equal(got[key], ref[key]), f"{who}: {key} differs from transformers loading the save"
    pairs = theirs([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")
    got = ours_again([a for a, _ in PAIRS], [b for _, b in PAIRS])
    assert torch.equal(got["input_ids"], pairs["input_ids"]) and torch.equal(
        got["token_type_ids"], pairs["token_type_ids"]), "pairs differ after save -> transformers load"


def test_decode_round_trip(from_json):
    text = "the quick brown fox jumps over the lazy dog"
    ids = from_json(text)["input_ids"][0].tolist()
    assert from_json.decode(ids) == text, f"decode gave {from_json.decode(ids)!r}"
    assert from_json.convert_ids_to_tokens(ids[:2]) == ["[CLS]", "the"], "convert_ids_to_tokens"


def test_bad_vocabularies(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(CheckpointError) as error:
        BertTokenizer.from_vocab(tmp_path / "vocab.txt")
    assert "[MASK]" in str(error.value), f"a vocabulary without [MASK] should say so: {error.value}"
    with pytest.raises(CheckpointError) as error:
        BertTokenizer.from_vocab(tmp_path / "missing.txt")
    assert "missing.txt" in str(error.value), f"missing vocab file should be named: {error.value}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError) as error:
        BertTokenizer.from_pretrained(empty)
    assert "vocab.txt" in str(error.value), f"a folder without vocabulary should say so: {error.value}"


def test_vocab_txt_keeps_special_tokens_typed_in_text(from_vocab, from_json):
    text = "the capital of france is [MASK]."
    ids = from_vocab(text)["input_ids"][0].tolist()
    assert ids == from_json(text)["input_ids"][0].tolist(), "vocab.txt and tokenizer.json differ on a typed [MASK]"
    assert from_vocab.mask_id in ids, "[MASK] typed in a text was split into pieces"
