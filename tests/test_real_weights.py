"""The real all-MiniLM-L6-v2 checkpoint (a BertModel: modern names, no `bert.` prefix, a stored position_ids
buffer): minibert's loader, tokenizer and encoder against transformers on real sentences."""

from __future__ import annotations

import pytest
import torch
import transformers

from minibert import model as mb
from minibert.tokenizer import BertTokenizer

REAL_TOL = 1e-5

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on stage.",
    "Someone is performing music with a guitar.",
    "Stock markets fell sharply after the announcement.",
    "Crème brûlée à la façon de Zoë, naïve café owner in São Paulo!",
    "我爱北京天安门。東京タワーへ行きました。",
    "I love 🍕 and 🎉!!! Do you? :-)",
    "Hello,world!!...(test)[x]{y} — dashes – «quotes» \"double\" 'single' #hash @user $5.00 100%",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,  # one word over 100 characters -> [UNK]
    "",
    "Tabs\tnew\nlines and\u200bzero-width and control\x07chars",
    "3.14159 is pi; 1,000,000 is a million; 2024-05-17T12:00Z",
    "UPPER lower MiXeD CaSe",
]
PAIRS = [
    ("How old are you?", "I am six years old."),
    ("Where is the station?", "Turn left after the bridge; it's near the café."),
    ("", "Only the second segment has text."),
    ("短い質問", "A mixed-script answer 🙂"),
]
LONG_TEXT = " ".join(f"sentence number {i} talks about tokenization, weights and parity." for i in range(80))


@pytest.fixture(scope="module")
def ours_tokenizer(minilm_dir):
    return BertTokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_dir):
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    assert tokenizer.is_fast, "expected transformers to load a fast BERT tokenizer from tokenizer.json"
    return tokenizer


@pytest.fixture(scope="module")
def hf_model(minilm_dir):
    return transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def ours_model(minilm_dir):
    return mb.BertModel.from_pretrained(minilm_dir, attn_implementation="eager")


def test_load_report_of_real_checkpoint(ours_model, minilm_dir):
    report = ours_model.load_report
    assert report.derived == ["embeddings.position_ids"], (
        f"the stored position_ids buffer should be reported as derived, got derived={report.derived}")
    assert report.newly_initialised == [], f"tensors newly initialised: {report.newly_initialised}"
    assert report.unused == [], f"checkpoint tensors unused: {report.unused}"
    assert report.legacy_renamed == 0, f"MiniLM has modern names, yet {report.legacy_renamed} were renamed"
    assert report.loaded == len(ours_model.state_dict()) == 103, (
        f"loaded {report.loaded} tensors; the model has {len(ours_model.state_dict())}, MiniLM stores 103 "
        "+ position_ids")
    config = ours_model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (
        384, 6, 12, 1536), f"config.json read wrongly: {config}"
    assert config.extra.get("gradient_checkpointing") is False, "unknown config.json keys were dropped"


def _encode_pairs_and_singles(tokenizer):
    singles = tokenizer(SENTENCES)
    pairs = tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS])
    return singles, pairs


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("unpad", [True, False])
def test_real_weights_match_transformers(minilm_dir, ours_tokenizer, hf_model, ours_model, attn, unpad, diff_real):
    model = ours_model if attn == "eager" and unpad else mb.BertModel.from_pretrained(
        minilm_dir, attn_implementation=attn, unpad=unpad)
    singles, pairs = _encode_pairs_and_singles(ours_tokenizer)
    assert pairs["token_type_ids"].sum() > 0, "pair batch has no segment-B tokens"
    worst = {}
    for name, batch in (("singles", singles), ("pairs", pairs)):
        with torch.no_grad():
            ours = model(**batch)
            theirs = hf_model(**batch)
        d = diff_real(ours.last_hidden_state, theirs.last_hidden_state, batch["attention_mask"])
        assert d <= REAL_TOL, f"{attn}/unpad={unpad}/{name}: last_hidden_state differs by {d:.3g} > {REAL_TOL}"
        p = (ours.pooler_output - theirs.pooler_output).abs().max().item()
        assert p <= REAL_TOL, f"{attn}/unpad={unpad}/{name}: pooler_output differs by {p:.3g} > {REAL_TOL}"
        worst[name] = (d, p)
    print(f"\nMiniLM {attn} unpad={unpad}: max |diff| last_hidden_state/pooler "
          + ", ".join(f"{k} {d:.2e}/{p:.2e}" for k, (d, p) in worst.items()))


def test_real_weights_full_length_input(ours_tokenizer, hf_model, ours_model):
    """A 512-token input (the longest BERT takes), truncated by the tokenizer."""
    batch = ours_tokenizer([LONG_TEXT, "short one"], max_length=512)
    assert batch["input_ids"].shape == (2, 512), f"expected truncation to 512 tokens, got {batch['input_ids'].shape}"
    with torch.no_grad():
        ours = ours_model(**batch).last_hidden_state
        theirs = hf_model(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    d = (ours[real] - theirs[real]).abs().max().item()
    print(f"\nMiniLM 512 tokens: max |diff| last_hidden_state {d:.2e}")
    assert d <= REAL_TOL, f"512-token input: last_hidden_state differs by {d:.3g}"


def test_real_weights_give_meaningful_sentence_embeddings(ours_tokenizer, ours_model):
    """Mean pooling (the sentence-transformers recipe): a paraphrase is closer than an unrelated sentence."""
    batch = ours_tokenizer(SENTENCES[1:4])
    with torch.no_grad():
        hidden = ours_model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    paraphrase, unrelated = (embeddings[0] @ embeddings[1]).item(), (embeddings[0] @ embeddings[2]).item()
    assert paraphrase > unrelated + 0.2, (
        f"guitar paraphrase similarity {paraphrase:.3f} is not clearly above the unrelated one {unrelated:.3f}")


# -- tokenizer ids against transformers' fast tokenizer ----------------------------------------------------------
@pytest.mark.parametrize("text", SENTENCES + [LONG_TEXT], ids=lambda t: repr(t[:20]))
def test_tokenizer_ids_match_transformers(ours_tokenizer, hf_tokenizer, text):
    ours = ours_tokenizer(text, padding=False)
    theirs = hf_tokenizer(text, truncation=True, max_length=512)
    assert ours["input_ids"][0] == theirs["input_ids"], f"{text[:40]!r}: input_ids differ from transformers"
    assert ours["token_type_ids"][0] == theirs["token_type_ids"], f"{text[:40]!r}: token_type_ids differ"
    assert ours["attention_mask"][0] == theirs["attention_mask"], f"{text[:40]!r}: attention_mask differs"
    assert ours_tokenizer.tokenize(text) == hf_tokenizer.tokenize(text), f"{text[:40]!r}: tokens differ"


def test_tokenizer_long_words_and_truncation(ours_tokenizer, hf_tokenizer):
    assert ours_tokenizer.tokenize("a" * 101) == ["[UNK]"], "a word over 100 characters should be one [UNK]"
    assert len(ours_tokenizer(LONG_TEXT, padding=False, truncation=False)["input_ids"][0]) > 512, (
        "the long text should exceed 512 tokens untruncated")
    ids = ours_tokenizer(LONG_TEXT, padding=False)["input_ids"][0]
    assert len(ids) == 512 and ids[-1] == ours_tokenizer.sep_id, "truncation to 512 must keep the final [SEP]"


def test_tokenizer_padded_batches_and_pairs_match_transformers(ours_tokenizer, hf_tokenizer):
    texts = SENTENCES + [LONG_TEXT]
    ours = ours_tokenizer(texts, max_length=512)
    theirs = hf_tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(ours[key], theirs[key]), f"padded batch: {key} differs from transformers"
    firsts, seconds = [a for a, _ in PAIRS] + [LONG_TEXT], [b for _, b in PAIRS] + ["a short answer"]
    ours = ours_tokenizer(firsts, seconds, max_length=512)
    theirs = hf_tokenizer(firsts, seconds, padding=True, truncation=True, max_length=512, return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(ours[key], theirs[key]), f"pair batch: {key} differs from transformers"
    assert ours["token_type_ids"][0].tolist().count(1) == len(hf_tokenizer(PAIRS[0][1])["input_ids"]) - 1, (
        "segment B (its tokens and final [SEP]) should carry token_type_id 1")


def test_eager_path_is_bit_identical_without_padding(ours_tokenizer, hf_model, minilm_dir):
    """The reference path does transformers' arithmetic in transformers' order: on a batch with no padding (every
    tensor the same shape in both) float32 results are equal, not just close. MiniLM's head size 32 also catches
    a division by sqrt(Dh) where transformers multiplies by Dh^-0.5 (they round differently)."""
    model = mb.BertModel.from_pretrained(minilm_dir, attn_implementation="eager")
    batch = ours_tokenizer(["the capital of france is paris , today .", "a man plays a guitar on the stage ."])
    assert bool(batch["attention_mask"].all()), "the batch should have no padding"
    with torch.no_grad():
        ours, theirs = model(**batch), hf_model(**batch)
    d = (ours.last_hidden_state - theirs.last_hidden_state).abs().max().item()
    assert d == 0.0, f"eager path without padding differs from transformers by {d:.3g} (expected bit-identical)"
    assert torch.equal(ours.pooler_output, theirs.pooler_output), "pooler output not bit-identical"
