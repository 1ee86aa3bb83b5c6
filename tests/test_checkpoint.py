"""minibert.checkpoint and minibert.plumbing.hub: every checkpoint dialect loads (published bert-base-uncased layout,
pytorch_model.bin, bare encoder exports, sharded files, the hub cache), the load report says what happened to
each tensor, saving round-trips through transformers, and bad checkpoints fail with one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers
from safetensors.torch import save_file

from minibert import model as mb
from minibert.checkpoint import hf_state_dict
from minibert.config import BertConfig
from minibert.errors import CheckpointError, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5

# bert-base-uncased's published config.json, at a tiny size (12 layers kept, so the tensor count is the real one).
PUBLISHED_CONFIG = {
    "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": False,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 8, "initializer_range": 0.02,
    "intermediate_size": 16, "layer_norm_eps": 1e-12, "max_position_embeddings": 16, "model_type": "bert",
    "num_attention_heads": 2, "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
    "transformers_version": "4.6.0.dev0", "type_vocab_size": 2, "use_cache": True, "vocab_size": 40,
}
CLS_TENSORS = ["cls.predictions.bias", "cls.predictions.transform.dense.weight",
               "cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.gamma",
               "cls.predictions.transform.LayerNorm.beta", "cls.seq_relationship.weight", "cls.seq_relationship.bias"]


def legacy_name(name: str) -> str:
    return name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")


def small_batch(vocab_size: int, max_len: int = 9, seed: int = 0) -> dict:
    """Two rows of [CLS] A [SEP] B [SEP] and one padded single sentence."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (3, max_len), generator=g)
    ids[:, 0] = 1
    mask = torch.ones_like(ids)
    mask[2, 5:] = 0
    ids[2, 5:] = 0
    ids[:, 4] = 2
    ids[0:2, -1] = 2
    ids[2, 4] = 2
    types = torch.zeros_like(ids)
    types[0:2, 5:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def real_diff(a, b, mask) -> float:
    return (a[mask.bool()] - b[mask.bool()]).abs().max().item()


def one_line(error: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(error.value)
    assert "\n" not in message, f"error message is not one line: {message!r}"
    for fragment in fragments:
        assert fragment in message, f"error message {message!r} does not mention {fragment!r}"
    return message


# ----------------------------------------------------------------------------------------------------------------
# The published bert-base-uncased layout, reproduced at a tiny size
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def published(tmp_path_factory, randomize):
    """Three folders holding the same random BertForPreTraining weights:
    - `safetensors`: the published model.safetensors layout (206 tensors, `bert.`/`cls.` prefixes, gamma/beta,
      no decoder weight, no position_ids) with the published config.json;
    - `bin`: the published pytorch_model.bin layout (the same plus cls.predictions.decoder.weight);
    - `modern`: transformers' own save of the model, from which the reference is loaded."""
    root = tmp_path_factory.mktemp("published")
    hf_config = transformers.BertConfig(**{k: v for k, v in PUBLISHED_CONFIG.items() if k != "architectures"})
    torch.manual_seed(0)
    model = randomize(transformers.BertForPreTraining(hf_config), 11)
    model.save_pretrained(root / "modern")
    state = {legacy_name(k): v.detach().clone() for k, v in model.state_dict().items()
             if not k.startswith("cls.predictions.decoder.") and "position_ids" not in k}
    folders = {}
    for kind in ("safetensors", "bin"):
        folder = root / kind
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(PUBLISHED_CONFIG, indent=2))
        folders[kind] = folder
    save_file(state, str(folders["safetensors"] / "model.safetensors"), metadata={"format": "pt"})
    with_decoder = {**state, "cls.predictions.decoder.weight": state["bert.embeddings.word_embeddings.weight"].clone()}
    torch.save(with_decoder, folders["bin"] / "pytorch_model.bin")
    reference = transformers.BertForPreTraining.from_pretrained(root / "modern", attn_implementation="eager").eval()
    return SimpleNamespace(state=state, reference=reference, **folders, modern=root / "modern")


def test_published_layout_has_206_tensors(published):
    names = list(published.state)
    assert len(names) == 206, f"the published layout has 206 tensors (5 + 16 x 12 + 2 + 7), the fixture {len(names)}"
    assert all(n.startswith(("bert.", "cls.")) for n in names), "every published name starts with bert. or cls."
    assert sum(n.endswith("LayerNorm.gamma") for n in names) == 26, "expected 26 LayerNorm.gamma (2 x 12 + 2)"
    assert not any(n.endswith(("LayerNorm.weight", "LayerNorm.bias")) for n in names), "fixture left modern names"
    assert "cls.predictions.decoder.weight" not in names and not any("position_ids" in n for n in names)


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_published_layout_loads_into_pretraining_model(published, kind):
    model = mb.BertForPreTraining.from_pretrained(getattr(published, kind), attn_implementation="eager")
    report = model.load_report
    assert report.newly_initialised == [], f"{kind}: newly initialised {report.newly_initialised}"
    assert report.unused == [], f"{kind}: unused {report.unused}"
    assert report.legacy_renamed == 52, (
        f"{kind}: expected 52 gamma/beta renames (26 LayerNorms), got {report.legacy_renamed}")
    assert report.loaded == len(model.state_dict()), f"{kind}: loaded {report.loaded} of {len(model.state_dict())}"
    expected_derived = ["cls.predictions.decoder.weight"] if kind == "bin" else []
    assert report.derived == expected_derived, f"{kind}: derived {report.derived}, expected {expected_derived}"
    batch = small_batch(PUBLISHED_CONFIG["vocab_size"])
    with torch.no_grad():
        ours, theirs = model(**batch), published.reference(**batch)
    d = real_diff(ours.prediction_logits, theirs.prediction_logits, batch["attention_mask"])
    assert d <= TOL, f"{kind}: MLM logits differ from transformers by {d:.3g}"
    d = (ours.seq_relationship_logits - theirs.seq_relationship_logits).abs().max().item()
    assert d <= TOL, f"{kind}: NSP logits differ from transformers by {d:.3g}"


def test_bin_decoder_that_differs_from_embeddings_is_reported(published, tmp_path, caplog):
    state = torch.load(published.bin / "pytorch_model.bin", weights_only=True)
    state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"] + 1.0
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(PUBLISHED_CONFIG))
    with caplog.at_level("WARNING", logger="minibert"):
        mb.BertForPreTraining.from_pretrained(tmp_path)
    assert "cls.predictions.decoder.weight" in caplog.text, "an untied decoder weight was dropped silently"


def test_encoder_from_pretraining_checkpoint_reports_cls_unused(published):
    model = mb.BertModel.from_pretrained(published.safetensors, attn_implementation="eager")
    report = model.load_report
    assert sorted(report.unused) == sorted(CLS_TENSORS), f"unused should be the 7 cls.* tensors, got {report.unused}"
    assert report.newly_initialised == [], f"newly initialised: {report.newly_initialised}"
    batch = small_batch(PUBLISHED_CONFIG["vocab_size"])
    with torch.no_grad():
        ours, theirs = model(**batch), published.reference.bert(**batch)
    d = real_diff(ours.last_hidden_state, theirs.last_hidden_state, batch["attention_mask"])
    assert d <= TOL, f"encoder from the pretraining checkpoint differs from transformers by {d:.3g}"


def test_save_keeps_unknown_config_keys(published, tmp_path):
    model = mb.BertForPreTraining.from_pretrained(published.safetensors)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for key in ("gradient_checkpointing", "use_cache", "transformers_version"):
        assert saved.get(key) == PUBLISHED_CONFIG[key], f"config.json round trip lost or changed {key!r}"
    assert saved["architectures"] == ["BertForPreTraining"], f"architectures written as {saved['architectures']}"


# ----------------------------------------------------------------------------------------------------------------
# Other dialects: encoder-only checkpoints into heads, bare names, sharded files, .bin safety
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder_checkpoint(tmp_path_factory, make_config, hf_config, randomize):
    """A transformers BertModel (bare names, with pooler) saved to a folder."""
    torch.manual_seed(1)
    config = make_config("h36x3")
    model = randomize(transformers.BertModel(hf_config(config)), 5).eval()
    folder = tmp_path_factory.mktemp("encoder")
    model.save_pretrained(folder)
    return SimpleNamespace(folder=folder, model=model, config=config)


def test_classifier_from_encoder_checkpoint(encoder_checkpoint):
    model = mb.BertForSequenceClassification.from_pretrained(encoder_checkpoint.folder, num_labels=3)
    report = model.load_report
    assert report.newly_initialised == ["classifier.weight", "classifier.bias"], (
        f"only the classifier should be newly initialised, got {report.newly_initialised}")
    assert report.unused == [], f"unused: {report.unused}"
    assert torch.equal(model.bert.pooler.dense.weight, encoder_checkpoint.model.pooler.dense.weight), (
        "the pooler of the encoder checkpoint was not loaded")
    assert model.classifier.weight.shape == (3, 36), f"classifier shape {tuple(model.classifier.weight.shape)}"


def test_bare_names_load_into_head_classes(encoder_checkpoint):
    masked_lm = mb.BertForMaskedLM.from_pretrained(encoder_checkpoint.folder)
    report = masked_lm.load_report
    assert sorted(report.newly_initialised) == sorted(
        ["mlm.dense.weight", "mlm.dense.bias", "mlm.norm.weight", "mlm.norm.bias", "mlm.bias"]), (
        f"only the MLM head should be newly initialised, got {report.newly_initialised}")
    assert sorted(report.unused) == ["pooler.dense.bias", "pooler.dense.weight"], (
        f"BertForMaskedLM has no pooler, so the checkpoint's pooler is unused; got {report.unused}")
    reference = encoder_checkpoint.model
    for ours, theirs in (
            (masked_lm.bert.embeddings.word_embeddings.weight, reference.embeddings.word_embeddings.weight),
            (masked_lm.bert.layers[1].ffn.output.weight, reference.encoder.layer[1].output.dense.weight)):
        assert torch.equal(ours, theirs), "a bare encoder tensor was not loaded under the bert. prefix"
    tagger = mb.BertForTokenClassification.from_pretrained(encoder_checkpoint.folder, num_labels=4)
    batch = small_batch(encoder_checkpoint.config.vocab_size)
    with torch.no_grad():
        ours = tagger.bert(**batch).last_hidden_state
        theirs = reference(**batch).last_hidden_state
    d = real_diff(ours, theirs, batch["attention_mask"])
    assert d <= TOL, f"encoder loaded from bare names differs from transformers by {d:.3g}"


def test_sharded_checkpoint_loads(encoder_checkpoint, tmp_path):
    from safetensors.torch import load_file
    state = load_file(str(encoder_checkpoint.folder / "model.safetensors"))
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, shard_names in shards.items():
        save_file({n: state[n] for n in shard_names}, str(tmp_path / shard), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(t.numel() * 4 for t in state.values())},
             "weight_map": {n: shard for shard, shard_names in shards.items() for n in shard_names}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text((encoder_checkpoint.folder / "config.json").read_text())
    model = mb.BertModel.from_pretrained(tmp_path)
    report = model.load_report
    assert report.loaded == len(model.state_dict()) and not report.newly_initialised and not report.unused, (
        f"sharded load: {report.summary()}")
    batch = small_batch(encoder_checkpoint.config.vocab_size)
    with torch.no_grad():
        d = real_diff(model(**batch).last_hidden_state, encoder_checkpoint.model(**batch).last_hidden_state,
                      batch["attention_mask"])
    assert d <= TOL, f"sharded checkpoint gives outputs {d:.3g} away from transformers"


def test_corrupted_shard_index(encoder_checkpoint, tmp_path):
    (tmp_path / "config.json").write_text((encoder_checkpoint.folder / "config.json").read_text())
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError) as error:
        mb.BertModel.from_pretrained(tmp_path)
    one_line(error, "model.safetensors.index.json")


def test_num_labels_override_replaces_stored_labels(tmp_path, make_config):
    """minibert's own config.json always stores id2label (2 labels here); asking for another label count when
    loading must give a classifier of that size, as transformers does, not silently keep the stored count."""
    mb.BertModel(make_config("h36x3")).save_pretrained(tmp_path)
    assert len(json.loads((tmp_path / "config.json").read_text())["id2label"]) == 2
    model = mb.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    assert model.config.num_labels == 5 and model.classifier.weight.shape[0] == 5, (
        f"from_pretrained(num_labels=5) built a classifier with {model.classifier.weight.shape[0]} outputs "
        f"(config.num_labels={model.config.num_labels}): the stored id2label overrode the request")


class _WritesAFileWhenUnpickled:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_bin_is_loaded_with_weights_only(encoder_checkpoint, tmp_path):
    marker = tmp_path / "unpickled-code-ran"
    state = {"embeddings.word_embeddings.weight": torch.zeros(2), "payload": _WritesAFileWhenUnpickled(str(marker))}
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text((encoder_checkpoint.folder / "config.json").read_text())
    with pytest.raises(CheckpointError) as error:
        mb.BertModel.from_pretrained(folder)
    one_line(error, "pytorch_model.bin")
    assert not marker.exists(), "loading a .bin ran code from the pickle: it must use torch.load(weights_only=True)"

    torch.save({"embeddings.word_embeddings.weight": torch.zeros(2), "step": 3}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as error:
        mb.BertModel.from_pretrained(folder)
    one_line(error, "pytorch_model.bin", "tensors")


# ----------------------------------------------------------------------------------------------------------------
# Round trips through transformers, for every head class
# ----------------------------------------------------------------------------------------------------------------
ROUND_TRIP_CLASSES = [
    ("BertModel", {}), ("BertForPreTraining", {}), ("BertForMaskedLM", {}), ("BertForNextSentencePrediction", {}),
    ("BertForSequenceClassification", {"num_labels": 3}), ("BertForSequenceClassification", {"num_labels": 1}),
    ("BertForTokenClassification", {"num_labels": 5}), ("BertForQuestionAnswering", {}),
]
OUTPUT_FIELDS = {"BertModel": ["last_hidden_state", "pooler_output"],
                 "BertForPreTraining": ["prediction_logits", "seq_relationship_logits"],
                 "BertForQuestionAnswering": ["start_logits", "end_logits"]}


@pytest.mark.parametrize("class_name,overrides", ROUND_TRIP_CLASSES,
                         ids=[f"{c}-{o.get('num_labels', '')}" for c, o in ROUND_TRIP_CLASSES])
def test_minibert_save_loads_in_transformers(class_name, overrides, tmp_path, make_config, randomize):
    config = make_config("h30x2", attn_implementation="eager", **overrides)
    torch.manual_seed(2)
    ours = randomize(mb.MODEL_CLASSES[class_name](config), 21).eval()
    ours.save_pretrained(tmp_path)
    saved_config = json.loads((tmp_path / "config.json").read_text())
    assert saved_config["architectures"] == [class_name], f"config.json architectures {saved_config['architectures']}"
    theirs, info = getattr(transformers, class_name).from_pretrained(
        tmp_path, output_loading_info=True, attn_implementation="eager")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        assert not info[key], f"{class_name}: transformers reports {key} {info[key]}"
    theirs.eval()
    batch = small_batch(config.vocab_size)
    with torch.no_grad():
        a, b = ours(**batch), theirs(**batch)
    for name in OUTPUT_FIELDS.get(class_name, ["logits"]):
        x, y = getattr(a, name), getattr(b, name)
        per_token = tuple(x.shape[:2]) == tuple(batch["input_ids"].shape)
        d = real_diff(x, y, batch["attention_mask"]) if per_token else (x - y).abs().max().item()
        assert d <= TOL, f"{class_name}: {name} after minibert save -> transformers load differs by {d:.3g}"
    again = mb.MODEL_CLASSES[class_name].from_pretrained(tmp_path)
    assert not again.load_report.newly_initialised and not again.load_report.unused, (
        f"{class_name}: minibert does not reload its own save cleanly: {again.load_report.summary()}")
    for (n1, t1), (n2, t2) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert n1 == n2 and torch.equal(t1, t2), f"{class_name}: {n1} changed in a minibert save/load round trip"
    assert again.config.attn_implementation == "eager", "the minibert execution settings were not round-tripped"


def test_transformers_save_loads_in_minibert(encoder_checkpoint):
    """The transformers -> minibert direction for every head is tested in test_parity; here the plain folder."""
    model = mb.BertModel.from_pretrained(encoder_checkpoint.folder)
    assert model.load_report.loaded == len(model.state_dict()), model.load_report.summary()


# ----------------------------------------------------------------------------------------------------------------
# The tied MLM decoder
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture
def masked_lm(tmp_path, make_config, hf_config, randomize):
    torch.manual_seed(3)
    reference = randomize(transformers.BertForMaskedLM(hf_config(make_config("h36x3"))), 31)
    reference.save_pretrained(tmp_path)
    return mb.BertForMaskedLM.from_pretrained(tmp_path)


def test_decoder_is_the_word_embedding_matrix(masked_lm):
    config = masked_lm.config
    vocab_shaped = [n for n, p in masked_lm.named_parameters()
                    if tuple(p.shape) == (config.vocab_size, config.hidden_size)]
    assert vocab_shaped == ["bert.embeddings.word_embeddings.weight"], (
        f"the MLM decoder should have no weight of its own; (V, D) parameters: {vocab_shaped}")
    assert "cls.predictions.decoder.weight" not in hf_state_dict(masked_lm), "save should not repeat the tied decoder"
    batch = small_batch(config.vocab_size)
    with torch.no_grad():
        before = masked_lm(**batch).logits
        delta = torch.randn(config.hidden_size, generator=torch.Generator().manual_seed(0))
        masked_lm.bert.embeddings.word_embeddings.weight[7] += delta
        hidden = masked_lm.bert(**batch).last_hidden_state
        transformed = masked_lm.mlm.norm(masked_lm.mlm.activation(masked_lm.mlm.dense(hidden)))
        after = masked_lm(**batch).logits
    expected = transformed @ masked_lm.bert.embeddings.word_embeddings.weight.T + masked_lm.mlm.bias
    real = batch["attention_mask"].bool()
    assert (after - expected)[real].abs().max() <= 1e-5, "MLM logits do not use the current word embeddings"
    assert (after[..., 7] - before[..., 7])[real].abs().max() > 1e-3, "changing embedding row 7 left logit 7 unchanged"


def test_resize_token_embeddings_keeps_tie_and_old_rows(masked_lm, tmp_path):
    config = masked_lm.config
    old_vocab = config.vocab_size
    batch = small_batch(old_vocab)
    old_embeddings = masked_lm.bert.embeddings.word_embeddings.weight.detach().clone()
    old_bias = masked_lm.mlm.bias.detach().clone()
    with torch.no_grad():
        before = masked_lm(**batch).logits
    masked_lm.resize_token_embeddings(old_vocab + 7)
    embeddings = masked_lm.bert.embeddings.word_embeddings.weight
    assert masked_lm.config.vocab_size == old_vocab + 7, "config.vocab_size not updated by resize"
    assert embeddings.shape == (old_vocab + 7, config.hidden_size), f"embedding shape {tuple(embeddings.shape)}"
    assert torch.equal(embeddings[:old_vocab], old_embeddings), "resize changed the old embedding rows"
    assert torch.equal(masked_lm.mlm.bias[:old_vocab], old_bias), "resize changed the old MLM bias"
    with torch.no_grad():
        after = masked_lm(**batch).logits
        assert after.shape[-1] == old_vocab + 7, f"logits have {after.shape[-1]} columns after resize"
        d = (after[..., :old_vocab] - before)[batch["attention_mask"].bool()].abs().max().item()
        assert d <= 1e-6, f"logits over the old vocabulary changed by {d:.3g} after resize"
        embeddings[old_vocab + 3] += 1.0
        changed = masked_lm(**batch).logits
    assert (changed[..., old_vocab + 3] - after[..., old_vocab + 3]).abs().max() > 1e-3, (
        "the decoder is not tied to the resized embeddings")
    masked_lm.save_pretrained(tmp_path / "resized")
    theirs, info = transformers.BertForMaskedLM.from_pretrained(tmp_path / "resized", output_loading_info=True)
    assert not any(info.values()), f"transformers cannot load the resized save cleanly: {info}"
    assert theirs.config.vocab_size == old_vocab + 7, "saved config.json has the old vocab_size"


# ----------------------------------------------------------------------------------------------------------------
# Hub ids, offline (in a subprocess: huggingface_hub reads HF_HOME / HF_HUB_CACHE when it is imported)
# ----------------------------------------------------------------------------------------------------------------
def run_offline(code: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(cache), "HF_HUB_CACHE": str(cache / "hub"),
           "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT)


def test_hub_id_offline_with_empty_cache(tmp_path):
    result = run_offline(
        "from minibert.model import BertModel\n"
        "from minibert.errors import CheckpointError\n"
        "try:\n    BertModel.from_pretrained('some-org/some-model')\n"
        "except CheckpointError as e:\n    print('CheckpointError:', e)\n", tmp_path)
    assert result.returncode == 0, f"subprocess failed: {result.stderr[-2000:]}"
    out = result.stdout.strip()
    assert out.startswith("CheckpointError:"), f"expected a CheckpointError, got {out!r} / {result.stderr[-500:]}"
    assert "some-org/some-model" in out and "cache" in out and "HF_HUB_OFFLINE" in out, (
        f"the error should name the id, the cache and offline mode: {out!r}")
    assert "\n" not in out, f"error message is not one line: {out!r}"


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """Replace huggingface_hub.snapshot_download by a local 'hub': repos are folders under tmp_path/remote, and a
    download copies the files that match allow_patterns (with huggingface_hub's own filter) to a fresh folder."""
    import shutil

    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects
    remote, calls = tmp_path / "remote", []

    def snapshot_download(repo_id, allow_patterns=None, local_files_only=False, **kwargs):
        calls.append(allow_patterns)
        source = remote / repo_id
        files = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
        target = tmp_path / "downloaded" / repo_id / str(len(calls))
        for name in filter_repo_objects(files, allow_patterns=allow_patterns):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / name, target / name)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return SimpleNamespace(remote=remote, calls=calls, downloaded=tmp_path / "downloaded")


def test_hub_download_of_single_file_repo(fake_hub, encoder_checkpoint):
    repo = fake_hub.remote / "org" / "tiny"
    repo.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (repo / name).write_bytes((encoder_checkpoint.folder / name).read_bytes())
    (repo / "README.md").write_text("not needed")
    model = mb.BertModel.from_pretrained("org/tiny")
    assert model.load_report.loaded == len(model.state_dict()), model.load_report.summary()
    assert fake_hub.calls, "from_pretrained did not go through huggingface_hub.snapshot_download"
    fetched = sorted(p.name for p in fake_hub.downloaded.rglob("*") if p.is_file())
    assert fetched == ["config.json", "model.safetensors"], f"downloaded {fetched}; README.md is not needed"


def test_hub_download_of_sharded_repo(fake_hub, encoder_checkpoint):
    """Larger checkpoints on the hub are sharded: model.safetensors.index.json + model-0000i-of-0000n.safetensors.
    The local loader reads them (test_sharded_checkpoint_loads); the hub download must fetch them too."""
    from safetensors.torch import load_file
    repo = fake_hub.remote / "org" / "sharded"
    repo.mkdir(parents=True)
    state = load_file(str(encoder_checkpoint.folder / "model.safetensors"))
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, shard_names in shards.items():
        save_file({n: state[n] for n in shard_names}, str(repo / shard), metadata={"format": "pt"})
    (repo / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: shard for shard, shard_names in shards.items() for n in shard_names}}))
    (repo / "config.json").write_text((encoder_checkpoint.folder / "config.json").read_text())
    model = mb.BertModel.from_pretrained("org/sharded")
    assert model.load_report.loaded == len(model.state_dict()), model.load_report.summary()


def test_hub_id_loads_from_cache_layout(tmp_path, minilm_dir):
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--name"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (snapshot / name).symlink_to(minilm_dir / name)
    result = run_offline(
        "import torch\n"
        "from minibert.model import BertModel\n"
        "from minibert.tokenizer import BertTokenizer\n"
        "m = BertModel.from_pretrained('org/name')\n"
        "t = BertTokenizer.from_pretrained('org/name')\n"
        f"ref = BertModel.from_pretrained({str(minilm_dir)!r})\n"
        "b = t(['hello world', 'offline hub cache'])\n"
        "with torch.no_grad():\n"
        "    d = (m(**b).last_hidden_state - ref(**b).last_hidden_state).abs().max().item()\n"
        "print(m.load_report.loaded, len(m.load_report.newly_initialised), d)\n", tmp_path)
    assert result.returncode == 0, f"loading by hub id from the cache failed: {result.stderr[-2000:]}"
    loaded, new, diff = result.stdout.split()
    assert int(loaded) == 103 and int(new) == 0, f"hub-cache load report: loaded {loaded}, newly initialised {new}"
    assert float(diff) == 0.0, f"the model loaded by hub id differs from the folder load by {diff}"


# ----------------------------------------------------------------------------------------------------------------
# Bad checkpoints: one clear line, of the right class
# ----------------------------------------------------------------------------------------------------------------
def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError) as error:
        mb.BertModel.from_pretrained(tmp_path / "does-not-exist")
    one_line(error, "does-not-exist")
    with pytest.raises(CheckpointError) as error:
        mb.BertModel.from_pretrained("./no/such/folder")
    one_line(error, "no/such/folder")


def test_folder_without_weights(encoder_checkpoint, tmp_path):
    (tmp_path / "config.json").write_text((encoder_checkpoint.folder / "config.json").read_text())
    with pytest.raises(CheckpointError) as error:
        mb.BertModel.from_pretrained(tmp_path)
    one_line(error, str(tmp_path), "model.safetensors")


def test_folder_without_config(encoder_checkpoint, tmp_path):
    (tmp_path / "model.safetensors").write_bytes((encoder_checkpoint.folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError) as error:
        mb.BertModel.from_pretrained(tmp_path)
    one_line(error, "config.json")


def test_corrupted_safetensors(encoder_checkpoint, tmp_path):
    (tmp_path / "config.json").write_text((encoder_checkpoint.folder / "config.json").read_text())
    noise = torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    (tmp_path / "model.safetensors").write_bytes(noise.numpy().tobytes())
    with pytest.raises(CheckpointError) as error:
        mb.BertModel.from_pretrained(tmp_path)
    one_line(error, "model.safetensors", "safetensors")


def test_truncated_safetensors(minilm_dir, tmp_path):
    data = (minilm_dir / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "config.json").write_text((minilm_dir / "config.json").read_text())
    with pytest.raises(CheckpointError) as error:
        mb.BertModel.from_pretrained(tmp_path)
    one_line(error, "model.safetensors")


def test_config_and_weight_shape_mismatch(encoder_checkpoint, tmp_path):
    config = json.loads((encoder_checkpoint.folder / "config.json").read_text())
    config["vocab_size"] = 70  # the checkpoint's vocabulary has 64 rows
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((encoder_checkpoint.folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError) as error:
        mb.BertModel.from_pretrained(tmp_path)
    one_line(error, "embeddings.word_embeddings.weight", "(64, 36)", "(70, 36)")


@pytest.mark.parametrize("change,field", [({"num_attention_heads": 5}, "num_attention_heads"),
                                          ({"hidden_act": "gelu_fast"}, "hidden_act"),
                                          ({"hidden_size": "36"}, "hidden_size")])
def test_invalid_config_json(encoder_checkpoint, tmp_path, change, field):
    config = {**json.loads((encoder_checkpoint.folder / "config.json").read_text()), **change}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((encoder_checkpoint.folder / "model.safetensors").read_bytes())
    with pytest.raises(ConfigError) as error:
        mb.BertModel.from_pretrained(tmp_path)
    one_line(error, field, "config.json")


def test_unknown_override_is_a_config_error(encoder_checkpoint):
    with pytest.raises(ConfigError) as error:
        mb.BertModel.from_pretrained(encoder_checkpoint.folder, hidden_sise=10)
    one_line(error, "hidden_sise")


def test_config_rejected_before_weights_are_read():
    with pytest.raises(ConfigError) as error:
        BertConfig(hidden_size=30, num_attention_heads=4)
    one_line(error, "hidden_size", "num_attention_heads")
