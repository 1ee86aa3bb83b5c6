"""`embed` and `fill-mask` on tiny seeded models, through the library and the command line: results come back in
the caller's order through the length-sorted batching (each equal to the text run alone), the pooling modes are
what a hand computation from the model's hidden states gives, --normalize gives unit vectors in the same
directions, and fill-mask's predictions are the MLM head's softmax at each [MASK], in the order of the masks."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minibert.cli.main import main
from minibert.config import BertConfig
from minibert.inference import embed, fill_mask, longest_first
from minibert.model import BertForMaskedLM, BertModel
from minibert.tokenizer import BertTokenizer

from conftest import randomize_
from finetuning.test_run import FILLERS, VOCAB

CONFIG = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=48, max_position_embeddings=64)


def test_longest_first_is_stable():
    assert longest_first([3, 5, 3, 7]) == [3, 1, 0, 2], "longest first, equal lengths in their original order"


def save(folder, model):
    folder.mkdir()
    (folder / "vocab.txt").write_text("".join(token + "\n" for token in VOCAB), encoding="utf-8")
    randomize_(model, seed=3).save_pretrained(folder)
    BertTokenizer.from_vocab(folder / "vocab.txt").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return save(tmp_path_factory.mktemp("inference") / "encoder", BertModel(BertConfig(**CONFIG)))


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
    return save(tmp_path_factory.mktemp("inference") / "mlm", BertForMaskedLM(BertConfig(**CONFIG)))


def texts(n: int = 11, seed: int = 0) -> list[str]:
    """Texts of shuffled lengths (1 to 3n words), so that length sorting reorders them."""
    rng = random.Random(seed)
    lengths = rng.sample(range(1, 3 * n + 1), n)
    return [" ".join(rng.choice(FILLERS) for _ in range(length)) for length in lengths]


def alone(model, tokenizer, text: str):
    """The model's outputs for one text, with no padding and no batching."""
    with torch.no_grad():
        return model(**tokenizer([text]))


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_embed_returns_input_order_and_the_hand_computed_pooling(encoder_dir, pooling):
    model, tokenizer = BertModel.from_pretrained(encoder_dir).eval(), BertTokenizer.from_pretrained(encoder_dir)
    inputs = texts()
    assert sorted(inputs, key=len, reverse=True) != inputs, "test setup: the texts should not come sorted by length"
    weights = load_file(encoder_dir / "model.safetensors")  # the pooler's dense layer, under the checkpoint's names
    dense_weight, dense_bias = (next(tensor for name, tensor in weights.items()
                                     if name.endswith(f"pooler.dense.{part}")) for part in ("weight", "bias"))
    vectors = embed(model, inputs, tokenizer=tokenizer, pooling=pooling, batch_size=4)
    assert vectors.shape == (len(inputs), CONFIG["hidden_size"]), f"one vector per text: {tuple(vectors.shape)}"
    for index, text in enumerate(inputs):
        hidden = alone(model, tokenizer, text).last_hidden_state[0]  # (T, D), no padding
        expected = {"mean": hidden.mean(0), "cls": hidden[0],
                    "pooler": torch.tanh(hidden[0] @ dense_weight.T + dense_bias)}[pooling]
        assert torch.allclose(vectors[index], expected, atol=1e-5), \
            f"{pooling} pooling of text {index} ({len(text.split())} words), batched 4 at a time and sorted by " \
            f"length, should equal the hand computation on it alone; max diff " \
            f"{(vectors[index] - expected).abs().max():.2e}"


def test_embed_command_keeps_line_order_and_normalizes(encoder_dir, tmp_path):
    inputs = texts(seed=1)
    (tmp_path / "in.txt").write_text("\n".join(inputs) + "\n", encoding="utf-8")

    def run(output: str, *flags: str):
        assert main(["embed", str(encoder_dir), "--input", str(tmp_path / "in.txt"), "-o", str(tmp_path / output),
                     "--batch-size", "3", *flags]) == 0, f"embed {' '.join(flags)} failed"
        return tmp_path / output

    raw = np.load(run("raw.npy"))
    normalized = np.load(run("unit.npy", "--normalize"))
    lines = [json.loads(line) for line in run("unit.jsonl", "--normalize").read_text().splitlines()]
    model, tokenizer = BertModel.from_pretrained(encoder_dir).eval(), BertTokenizer.from_pretrained(encoder_dir)
    for index, text in enumerate(inputs):
        output = alone(model, tokenizer, text).last_hidden_state[0].mean(0).numpy()
        assert np.allclose(raw[index], output, atol=1e-5), f"row {index} of the .npy should be line {index + 1}'s " \
                                                           f"mean embedding"
    assert np.allclose(np.linalg.norm(normalized, axis=1), 1.0, atol=1e-6), "--normalize should give unit vectors"
    assert np.allclose(normalized, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6), \
        "--normalize should only rescale each vector, keeping its direction"
    assert [line["text"] for line in lines] == inputs, "JSONL lines should come in the input's order"
    assert np.allclose([line["embedding"] for line in lines], normalized, atol=1e-6), \
        "JSONL embeddings should equal the .npy rows (rounded to 6 places)"


def test_fill_mask_gives_each_masks_softmax_in_order(mlm_dir, capsys):
    model, tokenizer = BertForMaskedLM.from_pretrained(mlm_dir).eval(), BertTokenizer.from_pretrained(mlm_dir)
    text = "[MASK] film was very [MASK] and the [MASK] was bad"
    with torch.no_grad():
        logits = alone(model, tokenizer, text).logits[0]  # (T, V)
    masks = (tokenizer([text])["input_ids"][0] == tokenizer.mask_id).nonzero().flatten().tolist()
    assert len(masks) == 3, f"test setup: the text should hold three [MASK] tokens, found {len(masks)}"
    assert main(["fill-mask", str(mlm_dir), text, "--top-k", "4", "--json"]) == 0, "fill-mask failed"
    printed = json.loads(capsys.readouterr().out)
    assert printed == [[{"token": token, "probability": p} for token, p in mask]
                       for mask in fill_mask(model, text, tokenizer=tokenizer, top_k=4)], \
        "--json should print fill_mask's result"
    assert len(printed) == 3, f"one list of predictions per [MASK]: {printed}"
    for number, (position, predictions) in enumerate(zip(masks, printed), start=1):
        probabilities = logits[position].softmax(-1)
        top = probabilities.topk(4)
        expected = [(tokenizer.convert_ids_to_tokens([i])[0], p) for p, i in zip(top.values.tolist(),
                                                                                 top.indices.tolist())]
        got = [(prediction["token"], prediction["probability"]) for prediction in predictions]
        assert [token for token, _ in got] == [token for token, _ in expected] and \
            [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-6), \
            f"[MASK] {number} (position {position}): expected the head's top 4 {expected}, got {got}"


def test_python_calls_take_a_folder_and_refuse_what_the_command_refuses(encoder_dir, mlm_dir):
    """From Python as from the command line: a folder name is enough, an untrained head is refused (it would give
    confident nonsense), and errors name the Python argument, not the command's flag."""
    from minibert.errors import CheckpointError, InputError
    text = "the film was [MASK]"
    model, tokenizer = BertForMaskedLM.from_pretrained(mlm_dir), BertTokenizer.from_pretrained(mlm_dir)
    assert fill_mask(mlm_dir, text, top_k=3) == fill_mask(model, text, tokenizer=tokenizer, top_k=3), \
        "fill_mask on a folder should load its model and tokenizer"
    with pytest.raises(CheckpointError, match="has no masked-LM head"):
        fill_mask(encoder_dir, text)  # an encoder: BertForMaskedLM would get a random head
    with pytest.raises(InputError, match=r"^top_k must be between 1"):
        fill_mask(mlm_dir, text, top_k=0)
    with pytest.raises(InputError, match=r"^pooling must be one of .*got 'median'"):
        embed(encoder_dir, ["a text"], pooling="median")
    with pytest.raises(InputError, match=r"^max_length must be between 2 and the model's 64 positions"):
        embed(encoder_dir, ["a text"], max_length=65)
    with pytest.raises(CheckpointError, match=r"embed pooling pooler needs trained weights"):
        embed(mlm_dir, ["a text"], pooling="pooler")
    with pytest.raises(InputError, match=r"was not loaded from a folder; pass tokenizer"):
        embed(BertModel(BertConfig(**CONFIG)), ["a text"])
    with pytest.raises(InputError, match=r"texts\[1\] is int"):
        embed(encoder_dir, ["a text", 3])
