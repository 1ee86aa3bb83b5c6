"""minibert.config: validation with messages naming the field, and config.json round trips (ours and
transformers')."""

from __future__ import annotations

import json

import pytest
import transformers

from minibert.config import BertConfig
from minibert.errors import ConfigError


def test_defaults_are_bert_base():
    c = BertConfig()
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (
        30522, 768, 12, 12, 3072), "defaults should be bert-base-uncased"
    assert (c.hidden_act, c.layer_norm_eps, c.max_position_embeddings, c.type_vocab_size) == ("gelu", 1e-12, 512, 2)
    assert c.head_size == 64, f"head_size {c.head_size}"


@pytest.mark.parametrize("changes,field", [
    ({"vocab_size": 0}, "vocab_size"),
    ({"hidden_size": -8}, "hidden_size"),
    ({"num_hidden_layers": 1.5}, "num_hidden_layers"),
    ({"num_attention_heads": True}, "num_attention_heads"),
    ({"intermediate_size": "3072"}, "intermediate_size"),
    ({"max_position_embeddings": 0}, "max_position_embeddings"),
    ({"type_vocab_size": 0}, "type_vocab_size"),
    ({"hidden_size": 30, "num_attention_heads": 4}, "num_attention_heads"),
    ({"hidden_act": "gelu_fast"}, "hidden_act"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ({"attn_implementation": "flash_attention_2"}, "attn_implementation"),
    ({"hidden_dropout_prob": 1.0}, "hidden_dropout_prob"),
    ({"attention_probs_dropout_prob": -0.1}, "attention_probs_dropout_prob"),
    ({"classifier_dropout": 1.5}, "classifier_dropout"),
    ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
    ({"num_labels": 0}, "num_labels"),
])
def test_invalid_config_names_the_field(changes, field):
    with pytest.raises(ConfigError) as error:
        BertConfig(**changes)
    message = str(error.value)
    assert field in message, f"{changes}: message {message!r} does not name {field!r}"
    assert "\n" not in message, f"{changes}: message is not one line: {message!r}"


def test_head_size_not_a_power_of_two_is_fine():
    assert BertConfig(hidden_size=36, num_attention_heads=3).head_size == 12
    assert BertConfig(hidden_size=30, num_attention_heads=2).head_size == 15


def test_id2label_sets_num_labels():
    c = BertConfig(id2label={"0": "NEG", "1": "NEU", "2": "POS"})
    assert c.num_labels == 3, f"num_labels {c.num_labels} does not follow id2label"
    assert c.id2label == {0: "NEG", 1: "NEU", 2: "POS"}, f"id2label keys should become ints: {c.id2label}"
    assert c.label2id == {"NEG": 0, "NEU": 1, "POS": 2}, f"label2id {c.label2id}"
    assert BertConfig(num_labels=4).labels() == {i: f"LABEL_{i}" for i in range(4)}, "default label names"


def test_replace_num_labels_drops_stale_label_names():
    c = BertConfig(id2label={0: "NEG", 1: "POS"})
    assert c.replace(num_labels=5).num_labels == 5, (
        "replace(num_labels=5) on a config with 2 stored labels kept num_labels="
        f"{c.replace(num_labels=5).num_labels}: the stale id2label overrode the requested count")
    assert c.replace(hidden_dropout_prob=0.0).labels() == {0: "NEG", 1: "POS"}, "replace lost the label names"


def test_dict_round_trip_is_lossless():
    c = BertConfig(hidden_size=36, num_attention_heads=3, num_labels=5, problem_type="single_label_classification",
                   classifier_dropout=0.2, attn_implementation="eager", unpad=False,
                   extra={"gradient_checkpointing": False, "custom": {"nested": [1, 2]}})
    data = c.to_dict("BertForTokenClassification")
    assert data["architectures"] == ["BertForTokenClassification"] and data["model_type"] == "bert"
    assert data["minibert"] == {"attn_implementation": "eager", "unpad": False}, f"minibert key: {data['minibert']}"
    again = BertConfig.from_dict(json.loads(json.dumps(data)))
    for field in ("hidden_size", "num_attention_heads", "num_labels", "problem_type", "classifier_dropout",
                  "attn_implementation", "unpad"):
        assert getattr(again, field) == getattr(c, field), f"{field} changed in a to_dict/from_dict round trip"
    assert again.labels() == c.labels(), f"labels changed: {again.labels()} vs {c.labels()}"
    assert again.extra["gradient_checkpointing"] is False and again.extra["custom"] == {"nested": [1, 2]}, (
        f"unknown keys lost: {again.extra}")
    assert again.to_dict("BertForTokenClassification") == data, "second round trip is not a fixed point"


def test_json_file_round_trip_keeps_unknown_keys(tmp_path):
    published = {"architectures": ["BertForMaskedLM"], "hidden_size": 36, "num_attention_heads": 3,
                 "gradient_checkpointing": False, "use_cache": True, "transformers_version": "4.6.0.dev0",
                 "model_type": "bert", "some_future_key": {"a": 1}}
    (tmp_path / "in.json").write_text(json.dumps(published))
    c = BertConfig.from_json(tmp_path / "in.json")
    c.to_json(tmp_path / "out.json", architecture="BertModel")
    out = json.loads((tmp_path / "out.json").read_text())
    for key in ("gradient_checkpointing", "use_cache", "transformers_version", "some_future_key"):
        assert out[key] == published[key], f"config.json round trip lost {key!r}"
    assert out["architectures"] == ["BertModel"], f"architectures {out['architectures']}"
    assert BertConfig.from_json(tmp_path / "out.json").to_dict("BertModel") == c.to_dict("BertModel"), (
        "a config reloaded from its own config.json differs")


def test_transformers_and_minibert_read_each_others_config(tmp_path):
    hf = transformers.BertConfig(vocab_size=99, hidden_size=30, num_hidden_layers=3, num_attention_heads=2,
                                 intermediate_size=40, num_labels=3, hidden_act="relu")
    hf.save_pretrained(tmp_path / "hf")
    ours = BertConfig.from_json(tmp_path / "hf" / "config.json")
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "num_labels", "hidden_act", "layer_norm_eps"):
        assert getattr(ours, field) == getattr(hf, field), f"{field}: minibert read {getattr(ours, field)!r}"
    (tmp_path / "mb").mkdir()
    ours.to_json(tmp_path / "mb" / "config.json", architecture="BertForSequenceClassification")
    back = transformers.BertConfig.from_pretrained(tmp_path / "mb")
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "num_labels", "hidden_act"):
        assert getattr(back, field) == getattr(hf, field), f"{field}: transformers read {getattr(back, field)!r}"
    assert back.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, f"id2label {back.id2label}"


def test_from_json_errors(tmp_path):
    cases = {"missing.json": None, "bad.json": "{not json", "list.json": "[1, 2]",
             "badvalue.json": json.dumps({"hidden_size": 30, "num_attention_heads": 4})}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError) as error:
            BertConfig.from_json(tmp_path / name)
        assert name in str(error.value), f"{name}: message {str(error.value)!r} does not name the file"
        assert "\n" not in str(error.value), f"{name}: message is not one line"


def test_real_minilm_config(minilm_dir):
    c = BertConfig.from_json(minilm_dir / "config.json")
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (384, 6, 12, 1536)
    assert c.extra["_name_or_path"] == "nreimers/MiniLM-L6-H384-uncased", "unknown key _name_or_path not kept"
