"""WordPiece training: BERT's special-token ids, save/load round trip, and agreement with transformers."""

import itertools
import json
import subprocess
import sys

import pytest

from minibert.pretraining.corpus import iter_documents
from minibert.pretraining.wordpiece import Reread, train_wordpiece
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


def test_the_same_corpus_gives_the_same_vocabulary_every_time():
    """The trainer of `tokenizers` numbers `##` continuations in hash-map order, which changes between runs and
    breaks ties between merges differently (huggingface/tokenizers#1794): 40 trainings on this text gave 40
    different vocabularies before train_wordpiece named the continuations first. The whole id mapping must repeat,
    here and in a fresh process (another hash seed)."""
    documents = [["wel come to the tok en izers libr ary.", "the capital of france is paris, a city of cafes."]]
    vocabularies = {tuple(sorted(train_wordpiece(documents, 60, min_frequency=1).backend.get_vocab().items()))
                    for _ in range(20)}
    assert len(vocabularies) == 1, f"{len(vocabularies)} different vocabularies from 20 trainings on one corpus"
    script = ("import json; from minibert.pretraining.wordpiece import train_wordpiece; "
              f"print(json.dumps(train_wordpiece({documents!r}, 60, min_frequency=1).backend.get_vocab()))")
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert json.loads(other) == dict(next(iter(vocabularies))), "another process learnt another vocabulary"


def test_continuation_pieces_are_ordinary_pieces_of_the_learnt_tokenizer():
    """Named as special tokens for the trainer only: the tokenizer splits and decodes `##` pieces as usual."""
    tokenizer = train_wordpiece([["unbelievable unbelievably believable believe"]] * 3, 60, min_frequency=1)
    ids = tokenizer.backend.encode("believablyunbelievable", add_special_tokens=False).ids
    pieces = [tokenizer.backend.id_to_token(i) for i in ids]
    assert any(piece.startswith("##") for piece in pieces), pieces
    assert tokenizer.backend.decode(ids) == "believablyunbelievable", "continuation pieces must not be dropped as special"
    assert "##y" in tokenizer.backend.get_vocab(), "every character that continues a word has its ## piece"


def test_a_one_pass_iterator_and_a_list_learn_the_same_vocabulary():
    documents = [["the film was good.", "a good film, a great film."], ["the plot was thin."]] * 4
    from_list = train_wordpiece(documents, 80, min_frequency=1).backend.get_vocab()
    assert train_wordpiece(iter(documents), 80, min_frequency=1).backend.get_vocab() == from_list
    assert train_wordpiece(Reread(lambda: iter(documents)), 80, min_frequency=1).backend.get_vocab() == from_list
