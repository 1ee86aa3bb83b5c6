"""WordPiece training: BERT's special-token ids, save/load round trip, and agreement with transformers."""

import itertools

import pytest

from minibert.pretraining.corpus import iter_documents
from minibert.pretraining.wordpiece import train_wordpiece
from minibert.errors import DataError
from minibert.tokenizer import BertTokenizer

SENTENCES = ["The photosynthesis of Éclairs is unbelievably slow.", "Hyperparameters, tokenization & dogs!",
             "un-seen words: zyxwv qqq 12345", "[MASK] stays one token; so does [SEP]."]


@pytest.fixture(scope="module")
def trained(wiki_json) -> BertTokenizer:
    return train_wordpiece(itertools.islice(iter_documents(wiki_json), 300), vocab_size=2000)


def test_special_tokens_have_bert_ids(trained):
    assert trained.pad_id == 0, f"[PAD] must be id 0 as in BERT, got {trained.pad_id}"
    assert (trained.unk_id, trained.cls_id, trained.sep_id, trained.mask_id) == (1, 2, 3, 4), \
        "specials should follow [PAD] in the order [UNK] [CLS] [SEP] [MASK]"
    assert 1000 < trained.vocab_size <= 2000, f"vocab size {trained.vocab_size} not near the 2000 asked for"
    assert trained.tokenize("Photosynthesis")[1].startswith("##"), "a rare word should split into ## pieces"


def test_template_wraps_in_cls_and_sep(trained):
    ids = trained.backend.encode("a cat").ids
    assert ids[0] == trained.cls_id and ids[-1] == trained.sep_id, f"[CLS] ... [SEP] template missing: {ids}"


def test_save_load_round_trip(trained, tmp_path):
    trained.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"tokenizer.json", "vocab.txt", "tokenizer_config.json"}, \
        "save_pretrained should write the Hugging Face layout"
    for loaded in (BertTokenizer.from_pretrained(tmp_path), BertTokenizer.from_vocab(tmp_path / "vocab.txt")):
        for sentence in SENTENCES[:3]:
            assert loaded.encode_ids(sentence) == trained.encode_ids(sentence), \
                f"reloaded tokenizer encodes {sentence!r} differently"


def test_transformers_reads_the_saved_folder(trained, tmp_path):
    transformers = pytest.importorskip("transformers")
    trained.save_pretrained(tmp_path)
    reference = transformers.BertTokenizerFast.from_pretrained(str(tmp_path))
    for sentence in SENTENCES:
        assert reference(sentence)["input_ids"] == trained.backend.encode(sentence).ids, \
            f"transformers' BertTokenizerFast gives other ids for {sentence!r}"


def test_cased_training_keeps_case():
    tokenizer = train_wordpiece([["Paris Paris Paris is big.", "paris is small."]] * 3, vocab_size=100,
                                lowercase=False)
    assert "Paris" in tokenizer.tokenize("Paris"), "lowercase=False should keep capitals"


def test_errors():
    with pytest.raises(DataError, match="empty corpus"):
        train_wordpiece([], vocab_size=100)
    with pytest.raises(DataError, match="vocab_size 5"):
        train_wordpiece([["Some text."]], vocab_size=5)
