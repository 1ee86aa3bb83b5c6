"""PretrainingDataset.token_counts: the unigram counts that the "local-attention" initialisation starts the MLM
bias from, read from the prepared shards."""

import numpy as np
import pytest

from minibert.pretraining import PretrainingDataset, PretrainingOptions, prepare_pretraining_data


@pytest.mark.parametrize("dynamic", [False, True], ids=["static masks", "dynamic masks"])
def test_counts_are_the_text_tokens(tmp_path, tokenizer, make_documents, dynamic):
    documents = make_documents(30, 2, 4)
    options = PretrainingOptions(max_seq_length=32, dupe_factor=1, nsp=False, dynamic_masking=dynamic)
    prepare_pretraining_data(documents, tokenizer, tmp_path, options)
    counts = PretrainingDataset(tmp_path, tokenizer=tokenizer).token_counts()
    for special in (tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id):
        assert counts[special] == 0, f"special id {special} should not be counted"
    text = np.bincount([i for document in documents for sentence in tokenizer.encode_batch_ids(document)
                        for i in sentence], minlength=tokenizer.vocab_size)
    assert counts.argmax() == text.argmax(), "the most frequent token of the text should lead the counts"
    assert counts.sum() <= text.sum() * 1.05, "examples hold at most the text (truncation drops some)"
    if dynamic:
        assert (counts <= text).all(), "unmasked examples can only hold tokens of the text"


def test_cooccurrence_counts_are_those_of_the_stored_examples(tmp_path, tokenizer, make_documents):
    """The dataset's counts equal counting its examples one by one, specials left out (the distributional
    initialisation's input)."""
    from minibert.pretraining.cooccurrence import cooccurrence_counts
    documents = make_documents(30, 2, 4)
    options = PretrainingOptions(max_seq_length=32, dupe_factor=1, nsp=False, dynamic_masking=True)
    prepare_pretraining_data(documents, tokenizer, tmp_path, options)
    dataset = PretrainingDataset(tmp_path, tokenizer=tokenizer)
    keys, weights = dataset.cooccurrence_counts(window=3)
    specials = [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id]
    expected: dict[int, float] = {}
    for index in range(len(dataset)):
        ids = dataset.example(index).input_ids
        for key, weight in zip(*cooccurrence_counts(ids, np.array([0, len(ids)]), tokenizer.vocab_size, specials, 3)):
            expected[int(key)] = expected.get(int(key), 0.0) + float(weight)
    assert dict(zip(keys.tolist(), weights.tolist())) == pytest.approx(expected), \
        "shard-wide counts should equal the sum of per-example counts"
    assert not any(k // tokenizer.vocab_size in specials or k % tokenizer.vocab_size in specials for k in keys)
