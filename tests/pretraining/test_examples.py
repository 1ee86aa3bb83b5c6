"""Pretraining examples: the original's masking and pairing statistics, the stored layout, determinism,
dynamic masking, and a smoke run on real Wikipedia text. Tolerances are several standard deviations of the
sampling noise at these sample sizes (all runs are seeded, so the results are also reproducible)."""

import itertools
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from minibert.pretraining.corpus import iter_documents
from minibert.pretraining.masking import Masker, num_to_predict, subword_table
from minibert.pretraining.examples import (PretrainingOptions, create_examples_from_document, create_examples_in_memory,
                                           generate_examples, truncate_seq_pair)
from minibert.pretraining.shards import PretrainingDataset, collate_pretraining, prepare_pretraining_data
from minibert.errors import DataError
from minibert.model import IGNORE_INDEX
from minibert.tokenizer import BertTokenizer
from minibert.training.batches import EpochBatches, train_loader


# -- masking ----------------------------------------------------------------------------------------------------
def test_mask_count_uses_all_tokens_like_the_original():
    assert num_to_predict(10, 0.15, 20) == 2, "10 tokens (specials included) * 0.15 rounds to 2"
    assert num_to_predict(3, 0.15, 20) == 1, "at least one position is always masked"
    assert num_to_predict(512, 0.15, 20) == 20, "max_predictions_per_seq caps the count"


def random_sequences(tokenizer, count: int, seed: int = 0) -> list[np.ndarray]:
    """[CLS] A [SEP] B [SEP] [PAD] [PAD] with random word ids, of random lengths."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(count):
        a, b = rng.integers(1000, 30000, size=rng.integers(5, 60)), rng.integers(1000, 30000, size=rng.integers(5, 60))
        sequences.append(np.concatenate([[tokenizer.cls_id], a, [tokenizer.sep_id], b, [tokenizer.sep_id],
                                         [tokenizer.pad_id] * 2]))
    return sequences


def test_masking_statistics(tokenizer):
    masker = Masker.for_tokenizer(tokenizer)
    rng = np.random.default_rng(1)
    masked = total = as_mask = unchanged = 0
    replaced = []
    for ids in random_sequences(tokenizer, 3000):
        inputs, labels = masker(ids, rng)
        chosen = labels != IGNORE_INDEX
        assert chosen.sum() == num_to_predict(len(ids), 0.15, 20), "wrong number of masked positions"
        special = np.isin(ids, [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id])
        assert not chosen[special].any() and (inputs[special] == ids[special]).all(), "a special token was masked"
        assert (labels[chosen] == ids[chosen]).all() and (inputs[~chosen] == ids[~chosen]).all(), \
            "labels must hold the original ids, and unchosen positions must be untouched"
        masked, total = masked + chosen.sum(), total + len(ids)
        as_mask += (inputs[chosen] == tokenizer.mask_id).sum()
        unchanged += (inputs[chosen] == ids[chosen]).sum()
        replaced.extend(inputs[chosen & (inputs != tokenizer.mask_id) & (inputs != ids)].tolist())
    assert abs(masked / total - 0.15) < 0.01, f"masked fraction {masked / total:.3f} is not about 15%"
    shares = np.array([as_mask, len(replaced), unchanged]) / masked
    assert np.allclose(shares, [0.8, 0.1, 0.1], atol=0.015), f"[MASK]/random/unchanged shares {shares} not 80/10/10"
    assert min(replaced) < 1000 and max(replaced) > 30000, "random replacements should span the whole vocabulary"


def test_whole_word_masking_is_all_or_nothing(tokenizer, make_documents):
    masker = Masker.for_tokenizer(tokenizer, whole_word=True)
    subword = subword_table(tokenizer)
    rng = np.random.default_rng(2)
    masked = total = multi_piece_words_masked = 0
    for sentence in itertools.chain.from_iterable(make_documents(60, 10, 10, seed=2)):
        ids = np.array([tokenizer.cls_id, *tokenizer.encode_ids(sentence), tokenizer.sep_id])
        _, labels = masker(ids, rng)
        chosen = labels != IGNORE_INDEX
        word_starts = np.flatnonzero(~subword[ids])
        for start, end in zip(word_starts, np.append(word_starts[1:], len(ids))):
            assert chosen[start:end].all() or not chosen[start:end].any(), \
                f"word {tokenizer.convert_ids_to_tokens(ids[start:end])} was masked only in part"
            multi_piece_words_masked += end - start > 1 and chosen[start]
        assert chosen.sum() <= num_to_predict(len(ids), 0.15, 20), "whole words overshot the mask budget"
        masked, total = masked + chosen.sum(), total + len(ids)
    assert multi_piece_words_masked > 50, "the test corpus should have many masked multi-piece words"
    assert 0.11 < masked / total <= 0.16, f"whole-word masked fraction {masked / total:.3f} far below 15%"


# -- pairing ----------------------------------------------------------------------------------------------------
def test_truncate_seq_pair_trims_the_longer_side_at_both_ends():
    rng = np.random.default_rng(0)
    a, b = list(range(10)), list(range(100, 130))
    cut_front = cut_back = 0
    for _ in range(200):
        new_a, new_b = truncate_seq_pair(a, b, 25, rng)
        assert (len(new_a), len(new_b)) == (10, 15), "only the longer side should be trimmed, down to the limit"
        assert new_b == b[new_b[0] - 100:new_b[-1] - 99], "truncation must keep a contiguous span"
        cut_front, cut_back = cut_front + (new_b[0] != 100), cut_back + (new_b[-1] != 129)
    assert cut_front > 150 and cut_back > 150, "trimming should happen at the front and at the back"


def test_examples_have_bert_layout(tokenizer, make_documents):
    options = PretrainingOptions(max_seq_length=48, dupe_factor=2, seed=5)
    for example in create_examples_in_memory(make_documents(30, 1, 12, seed=5), tokenizer, options):
        ids, types = example["input_ids"], example["token_type_ids"]
        b_start = int(types.argmax())
        assert len(ids) <= 48, f"example of {len(ids)} tokens exceeds max_seq_length 48"
        assert ids[0] == tokenizer.cls_id and ids[b_start - 1] == tokenizer.sep_id and ids[-1] == tokenizer.sep_id, \
            "layout must be [CLS] A [SEP] B [SEP]"
        assert b_start >= 3 and (types[b_start:] == 1).all() and (types[:b_start] == 0).all(), \
            "token types must be 0 over [CLS] A [SEP] and 1 over B [SEP], with A and B non-empty"
        assert (example["labels"] != IGNORE_INDEX).sum() == num_to_predict(len(ids), 0.15, 20), "wrong mask count"
        assert example["attention_mask"].all() and example["next_sentence_label"] in (0, 1), "bad mask or NSP label"


def marked_documents(num_documents: int, sentences: int) -> list[list[str]]:
    """Every sentence starts "doc J sent S" so an example's sentences can be traced to their source."""
    return [[f"doc {j} sent {s} the cat sat on the mat near the river bank." for s in range(sentences)]
            for j in range(num_documents)]


def markers(tokens: list[str]) -> list[tuple[int, int]]:
    return [(int(tokens[i + 1]), int(tokens[i + 3])) for i in range(len(tokens) - 3)
            if tokens[i] == "doc" and tokens[i + 2] == "sent" and tokens[i + 1].isdigit() and tokens[i + 3].isdigit()]


def test_next_sentence_pairs_are_true_or_random_and_balanced(tokenizer):
    options = PretrainingOptions(max_seq_length=64, short_seq_prob=0.0, dupe_factor=3, dynamic_masking=True, seed=3)
    examples = list(generate_examples(marked_documents(40, 30), tokenizer, options))
    checked = 0
    for example in examples:
        tokens = tokenizer.convert_ids_to_tokens(example.input_ids)
        a, b = markers(tokens[:example.b_start]), markers(tokens[example.b_start:])
        if not (a and b):
            continue  # truncation cut every marker of one side
        checked += 1
        if example.next_sentence_label == 0:
            assert {j for j, _ in a + b} == {a[0][0]} and b[0][1] > a[-1][1], f"'is next' B does not follow A: {a} {b}"
        else:
            assert b[0][0] != a[0][0], f"random B comes from A's own document: {a} {b}"
    assert checked > 0.9 * len(examples), f"only {checked} of {len(examples)} examples could be traced"
    random_share = np.mean([e.next_sentence_label for e in examples])
    # The original forces a random B for one-sentence chunks, which long documents rarely have.
    assert abs(random_share - 0.5) < 0.04, f"{random_share:.3f} of pairs are random, expected about half"


def test_short_seq_prob_gives_shorter_examples(tokenizer, make_documents):
    documents = make_documents(20, 80, 80, seed=4, words_per_sentence=(2, 4))

    def short_share(short_seq_prob: float) -> float:
        options = PretrainingOptions(max_seq_length=64, short_seq_prob=short_seq_prob, dupe_factor=3, seed=4,
                                     dynamic_masking=True)
        return np.mean([len(e.input_ids) < 32 for e in generate_examples(documents, tokenizer, options)])

    # The target length is drawn once per document pass (60 draws here), as in the original.
    never, default, half = short_share(0.0), short_share(0.1), short_share(0.5)
    assert never < 0.05, f"without short_seq_prob only document ends should be short, got {never:.3f}"
    assert default > never + 0.03, f"short_seq_prob=0.1 gave {default:.3f} short examples vs {never:.3f} without"
    assert half > default + 0.15, f"short_seq_prob=0.5 gave {half:.3f} short examples vs {default:.3f} at 0.1"


def test_mlm_only_examples_fill_one_segment(tokenizer, make_documents):
    options = PretrainingOptions(max_seq_length=64, nsp=False, dupe_factor=1, seed=6)
    examples = create_examples_in_memory(make_documents(20, 20, 30, seed=6), tokenizer, options)
    for example in examples:
        ids = example["input_ids"]
        assert "next_sentence_label" not in example, "nsp=False examples must not carry an NSP label"
        assert not example["token_type_ids"].any(), "nsp=False examples are one segment (token type 0)"
        assert len(ids) <= 64 and ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id, "not [CLS] text [SEP]"
        assert (ids == tokenizer.sep_id).sum() == 1, "one segment has exactly one [SEP]"
    assert np.median([len(e["input_ids"]) for e in examples]) == 64, "examples should fill max_seq_length"


# -- on disk ----------------------------------------------------------------------------------------------------
def prepare(tmp_path, name, documents, tokenizer, **options):
    prepare_pretraining_data(documents, tokenizer, tmp_path / name, PretrainingOptions(**options), shard_size=50)
    return tmp_path / name


def folder_bytes(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, tokenizer, make_documents):
    documents = make_documents(20, 1, 10, seed=7)
    options = dict(max_seq_length=32, dupe_factor=2, documents_per_chunk=8)
    first = prepare(tmp_path, "a", documents, tokenizer, seed=1, **options)
    again = prepare(tmp_path, "b", documents, tokenizer, seed=1, **options)
    other = prepare(tmp_path, "c", documents, tokenizer, seed=2, **options)
    assert len(list(first.glob("shard_*"))) > 1, "the test should cover several shards"
    assert folder_bytes(first) == folder_bytes(again), "the same seed must give byte-identical data"
    assert folder_bytes(first)["shard_00000/input_ids.npy"] != folder_bytes(other)["shard_00000/input_ids.npy"], \
        "a different seed should give different examples"


@pytest.mark.parametrize("options", [
    dict(),
    dict(dynamic_masking=True, whole_word_mask=True),
    dict(whole_word_mask=True, nsp=False),
    dict(dynamic_masking=True, nsp=False),
], ids=["static", "dynamic-wwm", "static-wwm-mlm-only", "dynamic-mlm-only"])
def test_sharded_equals_in_memory(tmp_path, tokenizer, make_documents, options):
    documents = make_documents(25, 1, 10, seed=8)
    options = dict(max_seq_length=40, dupe_factor=2, seed=8, documents_per_chunk=10, **options)  # 3 chunks
    dataset = PretrainingDataset(prepare(tmp_path, "data", documents, tokenizer, **options), tokenizer=tokenizer)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        expected = create_examples_in_memory(documents, tokenizer, PretrainingOptions(**options), epoch=epoch)
        assert len(dataset) == len(expected), "sharded and in-memory example counts differ"
        for index, (stored, direct) in enumerate(zip(dataset, expected)):
            assert stored.keys() == direct.keys(), f"example {index}: fields differ"
            assert all(torch.equal(stored[k], direct[k]) for k in stored), f"example {index}, epoch {epoch} differs"


def test_dynamic_masks_change_per_epoch_and_reproduce(tmp_path, tokenizer, make_documents):
    folder = prepare(tmp_path, "data", make_documents(10, 5, 10, seed=9), tokenizer, max_seq_length=64,
                     dupe_factor=1, dynamic_masking=True)
    dataset = PretrainingDataset(folder)
    epoch0 = [dataset[i]["labels"] for i in range(len(dataset))]
    dataset.set_epoch(1)
    epoch1 = [dataset[i]["labels"] for i in range(len(dataset))]
    repeat = PretrainingDataset(folder, epoch=1)
    assert all(torch.equal(repeat[i]["labels"], epoch1[i]) for i in range(len(dataset))), \
        "the same seed and epoch must give the same masks"
    changed = np.mean([not torch.equal(a, b) for a, b in zip(epoch0, epoch1)])
    assert changed > 0.9, f"only {changed:.2f} of examples got new masks in a new epoch"
    worker_copy = pickle.loads(pickle.dumps(repeat))
    assert torch.equal(worker_copy[0]["input_ids"], repeat[0]["input_ids"]), "a pickled dataset must reopen its files"


def test_the_loops_batches_of_dynamic_masks_are_the_same_with_workers_and_without_global_seeding(
        tmp_path, tokenizer, make_documents):
    """PretrainingDataset seeds its own masks (seeds_its_examples), so the loop reads it without seeding the global
    generators per example: the batches are those of the seeded path, with or without a worker process, and the
    global generators are left as they were."""
    folder = prepare(tmp_path, "data", make_documents(12, 4, 8, seed=11), tokenizer, max_seq_length=48,
                     dupe_factor=1, dynamic_masking=True, nsp=False)
    dataset = PretrainingDataset(folder, epoch=2)
    assert dataset.seeds_its_examples, "dynamic masking draws from its own generator"

    def batches(data, workers):
        order = EpochBatches(len(data), micro_batch=4, accumulation=1, rank=0, world_size=1, seed=0, epoch=2)
        return list(train_loader(data, collate_pretraining, order, num_workers=workers, pin_memory=False))

    class GloballySeeded(torch.utils.data.Dataset):  # the same dataset, read under seeded_rngs like any other
        def __len__(self):
            return len(dataset)

        def __getitem__(self, index):
            return dataset[index]

    torch.manual_seed(5)
    untouched = torch.get_rng_state()
    fast, seeded, with_worker = batches(dataset, 0), batches(GloballySeeded(), 0), batches(dataset, 1)
    assert torch.equal(torch.get_rng_state(), untouched), "reading must leave torch's global generator alone"
    assert len(fast) == len(seeded) == len(with_worker) > 2, "the test should cover several batches"
    for step, (a, b, c) in enumerate(zip(fast, seeded, with_worker)):
        for name in a:
            assert torch.equal(a[name], b[name]), f"batch {step}: {name} differs from the globally seeded path"
            assert torch.equal(a[name], c[name]), f"batch {step}: {name} differs with a worker process"


def test_collate_pads_to_the_longest(tokenizer, make_documents):
    examples = create_examples_in_memory(make_documents(5, 2, 6, seed=10), tokenizer,
                                         PretrainingOptions(max_seq_length=64, dupe_factor=1))[:4]
    batch = collate_pretraining(examples, pad_id=tokenizer.pad_id)
    width = max(len(e["input_ids"]) for e in examples)
    assert batch["input_ids"].shape == (4, width) and batch["next_sentence_label"].shape == (4,), "wrong shapes"
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        assert (batch["input_ids"][row, n:] == tokenizer.pad_id).all(), "ids must pad with [PAD]"
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all(), "labels must pad with -100"
        assert batch["attention_mask"][row].sum() == n, "attention mask must cover exactly the real tokens"


# -- errors -----------------------------------------------------------------------------------------------------
def test_invalid_settings_are_data_errors(tmp_path, tokenizer, make_documents):
    documents = make_documents(3, 2, 3)
    with pytest.raises(DataError, match="max_seq_length 7"):
        PretrainingOptions(max_seq_length=7)
    with pytest.raises(DataError, match="model's vocab_size is 1000"):
        prepare_pretraining_data(documents, tokenizer, tmp_path / "x", model_vocab_size=1000)
    with pytest.raises(DataError, match="model's vocab_size is 1000"):
        create_examples_in_memory(documents, tokenizer, model_vocab_size=1000)
    with pytest.raises(DataError, match="empty corpus"):
        create_examples_in_memory([[], ["  "]], tokenizer)


def test_folders_that_cannot_be_used(tmp_path, tokenizer, make_documents):
    folder = prepare(tmp_path, "data", make_documents(5, 2, 6), tokenizer, dupe_factor=1)
    with pytest.raises(DataError, match="not empty; pass overwrite=True"):
        prepare(tmp_path, "data", make_documents(5, 2, 6), tokenizer)
    prepare_pretraining_data(make_documents(5, 2, 6), tokenizer, folder, overwrite=True)
    with pytest.raises(DataError, match="different vocabulary"):
        PretrainingDataset(folder, tokenizer=with_extra_token(tokenizer))
    (folder / "shard_00000" / "b_start.npy").unlink()
    with pytest.raises(DataError, match="b_start.npy: missing"):
        PretrainingDataset(folder)
    (folder / "meta.json").unlink()
    with pytest.raises(DataError, match="meta.json: not found"):
        PretrainingDataset(folder)


def with_extra_token(tokenizer: BertTokenizer) -> BertTokenizer:
    """A copy of the tokenizer whose vocabulary has one more token."""
    backend = Tokenizer.from_str(tokenizer.backend.to_str())
    backend.add_tokens(["[EXTRA]"])
    return BertTokenizer(backend)


# -- real text --------------------------------------------------------------------------------------------------
def test_real_wikipedia_smoke(tmp_path, tokenizer, wiki_json):
    documents = itertools.islice(iter_documents(wiki_json), 200)
    meta = prepare_pretraining_data(documents, tokenizer, tmp_path / "wiki", PretrainingOptions(dupe_factor=1),
                                    shard_size=128, model_vocab_size=30522)
    dataset = PretrainingDataset(tmp_path / "wiki", tokenizer=tokenizer)
    assert meta["counts"]["documents"] == 200 and len(dataset) == meta["counts"]["examples"] > 200, \
        f"200 lead sections should give more than 200 examples: {meta['counts']}"
    batches = list(DataLoader(dataset, batch_size=32, collate_fn=collate_pretraining))
    lengths = torch.cat([b["attention_mask"].sum(1) for b in batches])
    masked = torch.cat([(b["labels"] != IGNORE_INDEX).sum(1) for b in batches])
    assert lengths.max() <= 128 and lengths.float().mean() > 64, f"lengths off: mean {lengths.float().mean():.1f}"
    assert (masked.float() / lengths).mean().item() == pytest.approx(0.15, abs=0.01), "about 15% should be masked"
    random_share = meta["counts"]["random_next"] / meta["counts"]["examples"]
    # Short lead sections often form one-sentence chunks, which always take a random B, so above one half.
    assert 0.5 < random_share < 0.75, f"random-next share {random_share:.2f} out of the expected range"
    text = tokenizer.decode(dataset[0]["input_ids"])
    assert len(text.split()) > 10, f"the first example decodes to too little text: {text!r}"


# -- next-sentence pairs as Google's create_pretraining_data.py builds them, traced sentence by sentence ----------
def traced_corpus(sentences_per_document: list[int], tokens_per_sentence: int = 1) -> list[list[list[int]]]:
    """Tokenized documents whose sentence s of document j is `tokens_per_sentence` copies of the id 1000 + 100 j + s,
    so every token says where it came from."""
    return [[[1000 + 100 * j + s] * tokens_per_sentence for s in range(n)]
            for j, n in enumerate(sentences_per_document)]


def segments(example) -> tuple[list[int], list[int]]:
    """The sentence ids of segment A and of segment B (consecutive copies of an id are one sentence)."""
    a, b = example.input_ids[1:example.b_start - 1], example.input_ids[example.b_start:-1]
    return ([int(i) for k, i in enumerate(a) if k == 0 or a[k - 1] != i],
            [int(i) for k, i in enumerate(b) if k == 0 or b[k - 1] != i])


def examples_of_each_document(corpus, options, tokenizer, seeds):
    """(document index, its examples) for every document of the corpus, with each seed."""
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for index in range(len(corpus)):
            yield index, create_examples_from_document(corpus, index, options, tokenizer, None, rng)


def test_sentences_left_over_by_a_random_b_start_the_next_example(tokenizer):
    # One-token sentences: a chunk ends exactly at its target length, so nothing is ever truncated, and every
    # sentence of the document must show up in A, or in an "is next" B, exactly once and in order.
    corpus = traced_corpus([30, 25, 12, 40, 1, 9])
    options = PretrainingOptions(max_seq_length=16, short_seq_prob=0.0)
    put_back = 0  # random Bs whose chunk had sentences after A
    for index, examples in examples_of_each_document(corpus, options, tokenizer, seeds=range(40)):
        used = []
        for example in examples:
            a, b = segments(example)
            assert a, "segment A must never be empty"
            used += a
            if example.next_sentence_label == 0:
                assert b == list(range(a[-1] + 1, a[-1] + 1 + len(b))), f"an 'is next' B must continue A: {a} {b}"
                used += b
            else:
                source = {sentence // 100 for sentence in b}
                assert len(source) == 1 and source != {10 + index} and b == list(range(b[0], b[0] + len(b))), \
                    f"a random B must be consecutive sentences of one other document: {b}"
                chunk = min(options.max_num_tokens, corpus[index][-1][0] - a[0] + 1)  # the target, or the rest
                put_back += len(a) < chunk
        assert used == [sentence[0] for sentence in corpus[index]], \
            f"document {index}: its sentences should each be used once, in order, when the sentences after a " \
            f"random B's A are put back; used {used}"
    assert put_back > 200, f"test setup: random Bs should often leave sentences to put back, did {put_back} times"


def test_one_sentence_chunks_always_take_a_random_b(tokenizer):
    options = PretrainingOptions(max_seq_length=16, short_seq_prob=0.0)
    # Sentences of 20 tokens each fill a chunk alone; a one-sentence document is one chunk of one sentence.
    long_sentences = traced_corpus([4, 3, 5, 1, 2], tokens_per_sentence=20)
    labels = [example.next_sentence_label
              for _, examples in examples_of_each_document(long_sentences, options, tokenizer, seeds=range(30))
              for example in examples]
    assert len(labels) == 30 * 15 and set(labels) == {1}, \
        f"every one-sentence chunk must take a random B (label 1), got {labels.count(0)} 'is next' of {len(labels)}"
    # The control: chunks of many one-token sentences take a random B about half the time.
    short_sentences = traced_corpus([40, 40, 40, 40])
    labels = [example.next_sentence_label
              for _, examples in examples_of_each_document(short_sentences, options, tokenizer, seeds=range(30))
              for example in examples]
    assert 0.4 < np.mean(labels) < 0.6, f"multi-sentence chunks should be random half the time: {np.mean(labels):.2f}"


def test_each_dupe_factor_pass_draws_new_pairs(tokenizer, make_documents):
    documents = make_documents(12, 10, 20, seed=11)
    options = PretrainingOptions(max_seq_length=64, short_seq_prob=0.1, dupe_factor=5, dynamic_masking=True, seed=11)
    examples = list(generate_examples(documents, tokenizer, options))
    copies = Counter((tuple(e.input_ids.tolist()), e.b_start, e.next_sentence_label) for e in examples)
    # Were the splits, random Bs and target lengths drawn once and reused, each example would occur 5 times.
    assert max(copies.values()) < 5 and np.mean(list(copies.values())) < 1.5, \
        f"each of the 5 passes should draw its own A/B splits: {len(examples)} examples, {len(copies)} distinct, " \
        f"the most repeated {max(copies.values())} times"
